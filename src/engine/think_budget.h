/* A thinking budget (vLLM's thinking_token_budget, Anthropic's thinking.budget_tokens): once the output has spent
 * `budget` tokens in its reasoning without ending it, the reasoning's end id is the only one allowed, so the
 * answer starts there. A constraint (engine/constraint.h) around the request's own one (structured outputs, tool
 * calls: inner, which takes over after the reasoning as its after_token says; NULL: none). While no token is
 * restricted, it says so (masks), so sampling stays where it was. */
#ifndef MIMO_ENGINE_THINK_BUDGET_H
#define MIMO_ENGINE_THINK_BUDGET_H
#include "core/status.h"
#include "engine/constraint.h"

/* end_id: the id that ends the reasoning (</think>); budget >= 0 tokens before it (counting from the first output
 * token, the end id not counted). Takes inner (also when it fails). */
mimo_status mimo_think_budget_constraint(int end_id, int budget, mimo_constraint *inner, mimo_constraint **out);
#endif
