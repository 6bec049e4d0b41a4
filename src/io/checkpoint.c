#include "io/checkpoint.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/num.h"

static uint64_t hash_name(const char *s) { return mimo_fnv1a(MIMO_FNV_BASIS, s, strlen(s)); }

static const mimo_st_tensor **slot(const mimo_ckpt *ck, const char *name) {
  size_t i = hash_name(name) & (ck->cap - 1);
  while (ck->table[i] && strcmp(ck->table[i]->name, name) != 0)
    i = (i + 1) & (ck->cap - 1);
  return &ck->table[i];
}

const mimo_st_tensor *mimo_ckpt_find(const mimo_ckpt *ck, const char *name) {
  return ck->cap ? *slot(ck, name) : NULL;
}

static mimo_status build_table(mimo_ckpt *ck) {
  size_t n = 0;
  for (int f = 0; f < ck->n_files; f++)
    n += ck->files[f].n_tensors;
  ck->cap = 16;
  while (ck->cap < 2 * n)
    ck->cap *= 2;
  ck->table = calloc(ck->cap, sizeof *ck->table);
  if (!ck->table)
    return mimo_errf(MIMO_E_NOMEM, "%s: tensor table", ck->dir);
  for (int f = 0; f < ck->n_files; f++) {
    for (size_t i = 0; i < ck->files[f].n_tensors; i++) {
      mimo_st_tensor *t = &ck->files[f].tensors[i];
      t->file_index = f;
      const mimo_st_tensor **s = slot(ck, t->name);
      if (*s)
        return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s' appears in both %s and %s", ck->dir, t->name,
                         ck->files[(*s)->file_index].path, ck->files[f].path);
      *s = t;
      ck->n_tensors++;
      ck->total_bytes += t->end - t->begin;
    }
  }
  return MIMO_OK;
}

/* Shard names come from a file we do not trust: plain file names only. */
static int safe_name(const char *s) {
  return s[0] && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static mimo_status open_indexed(mimo_ckpt *ck, const char *index_path) {
  char *text;
  size_t len;
  MIMO_TRY(mimo_read_file(index_path, &text, &len, 256u << 20));
  json_error_t err;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
  free(text);
  if (!root)
    return mimo_errf(MIMO_E_FORMAT, "%s: line %d: %s", index_path, err.line, err.text);
  mimo_status st = MIMO_OK;
  json_t *wm = json_object_get(root, "weight_map");
  const char **names = NULL;
  if (!json_is_object(wm) || json_object_size(wm) == 0) {
    st = mimo_errf(MIMO_E_FORMAT, "%s: missing or empty 'weight_map'", index_path);
    goto done;
  }
  names = calloc(json_object_size(wm), sizeof *names);
  ck->files = calloc(json_object_size(wm), sizeof *ck->files);
  if (!names || !ck->files) {
    st = mimo_errf(MIMO_E_NOMEM, "%s", index_path);
    goto done;
  }
  const char *key;
  json_t *v;
  json_object_foreach(wm, key, v) {
    if (!json_is_string(v) || !safe_name(json_string_value(v))) {
      st = mimo_errf(MIMO_E_FORMAT, "%s: weight_map['%s'] is not a plain shard file name", index_path, key);
      goto done;
    }
    const char *fn = json_string_value(v);
    int seen = 0;
    for (int i = 0; i < ck->n_files && !seen; i++)
      seen = strcmp(names[i], fn) == 0;
    if (!seen) {
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", ck->dir, fn);
      names[ck->n_files] = fn;
      st = mimo_st_open(path, &ck->files[ck->n_files]);
      if (st != MIMO_OK)
        goto done;
      ck->n_files++;
    }
  }
  st = build_table(ck);
  if (st != MIMO_OK)
    goto done;
  /* The index must agree with the shards: each listed tensor lives where it says. */
  json_object_foreach(wm, key, v) {
    const mimo_st_tensor *t = mimo_ckpt_find(ck, key);
    char want[4096];
    snprintf(want, sizeof want, "%s/%s", ck->dir, json_string_value(v));
    if (!t || strcmp(ck->files[t->file_index].path, want) != 0) {
      st = mimo_errf(MIMO_E_FORMAT, "%s: index maps tensor '%s' to %s, which does not contain it", index_path, key,
                     json_string_value(v));
      goto done;
    }
  }
done:
  free(names);
  json_decref(root);
  return st;
}

mimo_status mimo_ckpt_open(const char *dir, mimo_ckpt *ck) {
  memset(ck, 0, sizeof *ck);
  ck->dir = strdup(dir);
  if (!ck->dir)
    return mimo_errf(MIMO_E_NOMEM, "%s", dir);
  char path[4096];
  snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
  mimo_status st;
  if (mimo_file_exists(path)) {
    st = open_indexed(ck, path);
  } else {
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (!mimo_file_exists(path)) {
      st = mimo_errf(MIMO_E_IO, "%s: no model.safetensors.index.json or model.safetensors", dir);
    } else {
      ck->files = calloc(1, sizeof *ck->files);
      st = ck->files ? mimo_st_open(path, &ck->files[0]) : mimo_errf(MIMO_E_NOMEM, "%s", dir);
      if (st == MIMO_OK) {
        ck->n_files = 1;
        st = build_table(ck);
      }
    }
  }
  if (st != MIMO_OK)
    mimo_ckpt_close(ck);
  return st;
}

void mimo_ckpt_close(mimo_ckpt *ck) {
  if (!ck)
    return;
  for (int i = 0; i < ck->n_files; i++)
    mimo_st_close(&ck->files[i]);
  free(ck->files);
  free(ck->table);
  free(ck->dir);
  memset(ck, 0, sizeof *ck);
}

mimo_status mimo_ckpt_write_index(const char *dir, json_t *weight_map, uint64_t total_bytes) {
  json_t *idx = json_pack("{s:{s:I},s:o}", "metadata", "total_size", (json_int_t)total_bytes, "weight_map", weight_map);
  char path[4096];
  snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
  const int bad = !idx || json_dump_file(idx, path, JSON_INDENT(2) | JSON_SORT_KEYS) != 0;
  json_decref(idx);
  return bad ? mimo_errf(MIMO_E_IO, "%s: write failed", path) : MIMO_OK;
}

json_t *mimo_ckpt_int4_config(int group, bool asym, const char *observer, const int *ignore_layers, int n) {
  json_t *w = json_pack("{s:i,s:s,s:b,s:s,s:i,s:b,s:n,s:n,s:s}", "num_bits", 4, "type", "int", "symmetric", !asym,
                        "strategy", "group", "group_size", group, "dynamic", 0, "actorder", "block_structure",
                        "observer", observer);
  json_t *g = json_pack("{s:[s],s:o,s:n,s:n,s:s}", "targets", "re:.*mlp\\.experts\\.\\d+\\.(gate|up|down)_proj$",
                        "weights", w, "input_activations", "output_activations", "format", "pack-quantized");
  json_t *ignore = json_pack("[s]", "lm_head");
  for (int i = 0; i < n; i++) {
    char re[96];
    snprintf(re, sizeof re, "re:.*layers\\.%d\\.mlp\\.experts\\..*", ignore_layers[i]);
    json_array_append_new(ignore, json_string(re));
  }
  return json_pack("{s:s,s:s,s:s,s:{s:o},s:o,s:n}", "quant_method", "compressed-tensors", "format", "pack-quantized",
                   "quantization_status", "compressed", "config_groups", "group_0", g, "ignore", ignore,
                   "kv_cache_scheme");
}
