/* One function per subcommand: argv[0] is the subcommand name. Each returns the
 * process exit status (0 ok, 1 bad input or failure, 2 usage error). */
#ifndef MIMO_CLI_COMMANDS_H
#define MIMO_CLI_COMMANDS_H
int mimo_cmd_logits(int argc, char **argv);
int mimo_cmd_generate(int argc, char **argv);
int mimo_cmd_inspect(int argc, char **argv);
int mimo_cmd_synth(int argc, char **argv);
int mimo_cmd_bench(int argc, char **argv);
int mimo_cmd_perplexity(int argc, char **argv);
int mimo_cmd_quantize(int argc, char **argv);
int mimo_cmd_tokenize(int argc, char **argv);
int mimo_cmd_detokenize(int argc, char **argv);
int mimo_cmd_render(int argc, char **argv);
int mimo_cmd_serve(int argc, char **argv);
int mimo_cmd_vision(int argc, char **argv);
int mimo_cmd_bench_tokenizer(int argc, char **argv);
int mimo_cmd_bench_spec(int argc, char **argv);
#endif
