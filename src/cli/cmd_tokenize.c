/* mimo tokenize / detokenize / bench-tokenizer. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/fileio.h"
#include "text/tokenizer.h"

static char *read_stream(FILE *f, size_t *len) {
  size_t cap = 1 << 16, n = 0;
  char *b = malloc(cap + 1);
  while (b) {
    n += fread(b + n, 1, cap - n, f);
    if (n < cap)
      break;
    cap *= 2;
    char *nb = realloc(b, cap + 1);
    if (!nb)
      free(b);
    b = nb;
  }
  if (b)
    b[n] = 0;
  *len = n;
  return b;
}

static int load(const char *cmd, const char *dir, mimo_tok **t) {
  if (mimo_tok_load(dir, t) != MIMO_OK) {
    fprintf(stderr, "mimo %s: %s\n", cmd, mimo_errmsg());
    return 1;
  }
  return 0;
}

static void put_ids(const int *ids, size_t n, int json) {
  if (json)
    putchar('[');
  for (size_t i = 0; i < n; i++)
    printf(i ? ",%d" : "%d", ids[i]);
  if (json)
    putchar(']');
  putchar('\n');
}

int mimo_cmd_tokenize(int argc, char **argv) {
  mimo_arg a[] = {{"model", 1, "directory with tokenizer.json", 0},
                  {"jsonl", 0, "each stdin line is a JSON string; print a JSON array of ids per line", 0}};
  int na = 2, rc = mimo_args_parse(argc, argv, a, na, "--model DIR [--jsonl] < text");
  if (rc)
    return rc == 3 ? 0 : rc;
  const char *dir = mimo_arg_str(a, na, "model", NULL);
  if (!dir) {
    fprintf(stderr, "mimo tokenize: need --model DIR\n");
    return 2;
  }
  int jsonl = mimo_arg_str(a, na, "jsonl", NULL) != NULL;
  mimo_tok *t;
  if (load("tokenize", dir, &t))
    return 1;
  size_t len;
  char *in = read_stream(stdin, &len);
  if (!in) {
    fprintf(stderr, "mimo tokenize: out of memory reading stdin\n");
    mimo_tok_free(t);
    return 1;
  }
  int ret = 0;
  if (!jsonl) {
    int *ids;
    size_t n;
    if (mimo_tok_encode(t, in, len, &ids, &n) != MIMO_OK) {
      fprintf(stderr, "mimo tokenize: %s\n", mimo_errmsg());
      ret = 1;
    } else {
      put_ids(ids, n, 0);
      free(ids);
    }
  } else {
    size_t pos = 0, line = 0;
    while (pos < len && ret == 0) {
      char *nl = memchr(in + pos, '\n', len - pos);
      size_t end = nl ? (size_t)(nl - in) : len;
      line++;
      json_error_t err;
      json_t *s = end > pos ? json_loadb(in + pos, end - pos, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err) : NULL;
      pos = end + 1;
      if (!json_is_string(s)) {
        fprintf(stderr, "mimo tokenize: stdin line %zu is not a JSON string\n", line);
        json_decref(s);
        ret = 1;
        break;
      }
      int *ids;
      size_t n;
      if (mimo_tok_encode(t, json_string_value(s), json_string_length(s), &ids, &n) != MIMO_OK) {
        fprintf(stderr, "mimo tokenize: line %zu: %s\n", line, mimo_errmsg());
        ret = 1;
      } else {
        put_ids(ids, n, 1);
        free(ids);
      }
      json_decref(s);
    }
  }
  free(in);
  mimo_tok_free(t);
  return ret;
}

static int write_text(const char *s, size_t n, int json) {
  if (!json)
    return fwrite(s, 1, n, stdout) == n ? 0 : 1;
  json_t *j = json_stringn_nocheck(s, n);
  char *d = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
  json_decref(j);
  if (!d)
    return 1;
  printf("%s\n", d);
  free(d);
  return 0;
}

int mimo_cmd_detokenize(int argc, char **argv) {
  mimo_arg a[] = {{"model", 1, "directory with tokenizer.json", 0},
                  {"ids", 1, "comma-separated ids (default: read from stdin)", 0},
                  {"skip-special", 0, "drop special tokens", 0},
                  {"jsonl", 0, "each stdin line is a JSON array of ids; print a JSON string per line", 0}};
  int na = 4, rc = mimo_args_parse(argc, argv, a, na, "--model DIR [--ids 1,2,3] [--skip-special] [--jsonl]");
  if (rc)
    return rc == 3 ? 0 : rc;
  const char *dir = mimo_arg_str(a, na, "model", NULL), *ids_arg = mimo_arg_str(a, na, "ids", NULL);
  int skip = mimo_arg_str(a, na, "skip-special", NULL) != NULL, jsonl = mimo_arg_str(a, na, "jsonl", NULL) != NULL;
  if (!dir) {
    fprintf(stderr, "mimo detokenize: need --model DIR\n");
    return 2;
  }
  if (ids_arg && jsonl) {
    fprintf(stderr, "mimo detokenize: --ids and --jsonl exclude each other\n");
    return 2;
  }
  int *ids = NULL, nid = 0;
  if (ids_arg && (nid = mimo_parse_ids(ids_arg, &ids)) < 0)
    return 2;
  mimo_tok *t;
  if (load("detokenize", dir, &t)) {
    free(ids);
    return 1;
  }
  int ret = 0;
  size_t len = 0;
  char *in = ids_arg ? NULL : read_stream(stdin, &len);
  if (!ids_arg && !in) {
    fprintf(stderr, "mimo detokenize: out of memory reading stdin\n");
    ret = 1;
  } else if (!jsonl) {
    if (!ids_arg) {
      while (len && (in[len - 1] == '\n' || in[len - 1] == '\r' || in[len - 1] == ' '))
        in[--len] = 0;
      nid = len ? mimo_parse_ids(in, &ids) : 0;
      if (nid < 0)
        ret = 1;
    }
    char *text;
    size_t tl;
    if (ret == 0) {
      if (mimo_tok_decode(t, ids, (size_t)nid, skip, &text, &tl) != MIMO_OK) {
        fprintf(stderr, "mimo detokenize: %s\n", mimo_errmsg());
        ret = 1;
      } else {
        ret = write_text(text, tl, 0);
        free(text);
      }
    }
  } else {
    size_t pos = 0, line = 0;
    while (pos < len && ret == 0) {
      char *nl = memchr(in + pos, '\n', len - pos);
      size_t end = nl ? (size_t)(nl - in) : len;
      line++;
      json_error_t err;
      json_t *arr = end > pos ? json_loadb(in + pos, end - pos, 0, &err) : NULL;
      pos = end + 1;
      size_t n = json_array_size(arr);
      int *v = malloc((n + 1) * sizeof *v);
      if (!json_is_array(arr) || !v) {
        fprintf(stderr, "mimo detokenize: stdin line %zu is not a JSON array of ids\n", line);
        ret = 1;
      }
      for (size_t i = 0; i < n && ret == 0; i++) {
        json_t *e = json_array_get(arr, i);
        if (!json_is_integer(e)) {
          fprintf(stderr, "mimo detokenize: stdin line %zu: element %zu is not an integer\n", line, i);
          ret = 1;
        } else {
          json_int_t x = json_integer_value(e);
          v[i] = x < 0 || x > 0x7FFFFFFF ? -1 : (int)x;
        }
      }
      char *text;
      size_t tl;
      if (ret == 0) {
        if (mimo_tok_decode(t, v, n, skip, &text, &tl) != MIMO_OK) {
          fprintf(stderr, "mimo detokenize: %s\n", mimo_errmsg());
          ret = 1;
        } else {
          ret = write_text(text, tl, 1);
          free(text);
        }
      }
      free(v);
      json_decref(arr);
    }
  }
  free(in);
  free(ids);
  mimo_tok_free(t);
  return ret;
}

/* ---- bench-tokenizer ---- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Times the Rust library (through its Node binding) on the same files: prints
 * one line "bytes seconds" per file. */
static const char RUST_BENCH_JS[] =
    "const {Tokenizer}=require('@anush008/tokenizers');const fs=require('fs');"
    "const a=process.argv.slice(1);const minS=+a[0];const t=Tokenizer.fromFile(a[1]);"
    "(async()=>{for(const f of a.slice(2)){const s=fs.readFileSync(f,'utf8');"
    "await t.encode(s,null,{addSpecialTokens:false});let n=0;const t0=process.hrtime.bigint();let el=0;"
    "do{await t.encode(s,null,{addSpecialTokens:false});n++;el=Number(process.hrtime.bigint()-t0)/1e9;}"
    "while(el<minS);console.log(Buffer.byteLength(s)+' '+(el/n));}})().catch(e=>{console.error(e.message);"
    "process.exit(1);});";

static int rust_times(const char *npm, const char *tokjson, double min_s, char **files, int nf, double *sec) {
  int fd[2];
  if (pipe(fd))
    return -1;
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    dup2(fd[1], 1);
    close(fd[0]);
    close(fd[1]);
    char nodepath[4096], mins[32];
    snprintf(nodepath, sizeof nodepath, "%s/node_modules", npm);
    setenv("NODE_PATH", nodepath, 1);
    snprintf(mins, sizeof mins, "%g", min_s);
    char **av = calloc((size_t)nf + 6, sizeof *av);
    if (!av)
      _exit(127);
    int k = 0;
    av[k++] = "node";
    av[k++] = "-e";
    av[k++] = (char *)RUST_BENCH_JS;
    av[k++] = mins;
    av[k++] = (char *)tokjson;
    for (int i = 0; i < nf; i++)
      av[k++] = files[i];
    execvp("node", av);
    _exit(127);
  }
  close(fd[1]);
  FILE *f = fdopen(fd[0], "r");
  int got = 0;
  double bytes;
  while (f && got < nf && fscanf(f, "%lf %lf", &bytes, &sec[got]) == 2)
    got++;
  if (f)
    fclose(f);
  int status;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 && got == nf ? 0 : -1;
}

int mimo_cmd_bench_tokenizer(int argc, char **argv) {
  /* options and files may mix: split positional FILE arguments out first */
  char **opt = calloc((size_t)argc + 1, sizeof *opt), **files = calloc((size_t)argc + 1, sizeof *files);
  int no = 0, nf = 0;
  if (!opt || !files)
    return 1;
  opt[no++] = argv[0];
  for (int i = 1; i < argc; i++) {
    if (strncmp(argv[i], "--", 2) == 0 || strcmp(argv[i], "-h") == 0) {
      opt[no++] = argv[i];
      const char *o = argv[i] + 2;
      if ((!strcmp(o, "model") || !strcmp(o, "npm") || !strcmp(o, "seconds")) && i + 1 < argc)
        opt[no++] = argv[++i];
    } else {
      files[nf++] = argv[i];
    }
  }
  mimo_arg a[] = {{"model", 1, "directory with tokenizer.json", 0},
                  {"seconds", 1, "minimum timed seconds per file and library (default 1)", 0},
                  {"npm", 1, "tests/npm directory with @anush008/tokenizers (default $MIMO_SRC/tests/npm)", 0},
                  {"no-rust", 0, "do not time the Rust library", 0}};
  int na = 4, rc = mimo_args_parse(no, opt, a, na, "--model DIR [--seconds S] [--npm DIR] FILE...");
  int ret = 0;
  bool bad = false;
  const char *dir = mimo_arg_str(a, na, "model", NULL);
  double min_s = rc ? 0 : mimo_arg_double(a, na, "seconds", 1.0, &bad);
  if (rc) {
    ret = rc == 3 ? 0 : rc;
    goto out;
  }
  if (!dir || nf == 0 || bad || min_s <= 0) {
    fprintf(stderr, "mimo bench-tokenizer: need --model DIR and at least one FILE (see --help)\n");
    ret = 2;
    goto out;
  }
  mimo_tok *t;
  if (load("bench-tokenizer", dir, &t)) {
    ret = 1;
    goto out;
  }
  double *mine = calloc((size_t)nf, sizeof *mine), *rust = calloc((size_t)nf, sizeof *rust);
  size_t *sizes = calloc((size_t)nf, sizeof *sizes);
  double tot_b = 0, tot_m = 0, tot_r = 0;
  for (int i = 0; i < nf && ret == 0 && mine && rust && sizes; i++) {
    char *buf;
    size_t len;
    if (mimo_read_file(files[i], &buf, &len, (size_t)1 << 31) != MIMO_OK) {
      fprintf(stderr, "mimo bench-tokenizer: %s\n", mimo_errmsg());
      ret = 1;
      break;
    }
    int *ids;
    size_t n;
    long reps = 0;
    double t0 = now_s(), el = 0;
    if (mimo_tok_encode(t, buf, len, &ids, &n) == MIMO_OK) /* warm-up */
      free(ids);
    t0 = now_s();
    do {
      if (mimo_tok_encode(t, buf, len, &ids, &n) != MIMO_OK) {
        fprintf(stderr, "mimo bench-tokenizer: %s: %s\n", files[i], mimo_errmsg());
        ret = 1;
        break;
      }
      free(ids);
      reps++;
      el = now_s() - t0;
    } while (el < min_s);
    free(buf);
    sizes[i] = len;
    mine[i] = el / (double)(reps ? reps : 1);
    tot_b += (double)len;
    tot_m += mine[i];
  }
  int have_rust = 0;
  if (ret == 0 && !mimo_arg_str(a, na, "no-rust", NULL)) {
    const char *npm = mimo_arg_str(a, na, "npm", NULL);
    char npmdef[4096], tokjson[4096];
    if (!npm) {
      const char *src = getenv("MIMO_SRC");
      snprintf(npmdef, sizeof npmdef, "%s/tests/npm", src ? src : ".");
      npm = npmdef;
    }
    snprintf(tokjson, sizeof tokjson, "%s/tokenizer.json", dir);
    have_rust = rust_times(npm, tokjson, min_s, files, nf, rust) == 0;
    if (!have_rust)
      fprintf(stderr, "mimo bench-tokenizer: could not time the Rust library (node + %s/node_modules/"
                      "@anush008/tokenizers); showing mimo only\n", npm);
  }
  for (int i = 0; i < nf && ret == 0; i++) {
    printf("%-40s %9.3f MB  mimo %8.2f MB/s", files[i], sizes[i] / 1e6, sizes[i] / 1e6 / mine[i]);
    if (have_rust) {
      printf("  rust %8.2f MB/s  ratio %.2fx", sizes[i] / 1e6 / rust[i], rust[i] / mine[i]);
      tot_r += rust[i];
    }
    printf("\n");
  }
  if (ret == 0) {
    printf("%-40s %9.3f MB  mimo %8.2f MB/s", "total", tot_b / 1e6, tot_b / 1e6 / tot_m);
    if (have_rust)
      printf("  rust %8.2f MB/s  ratio %.2fx", tot_b / 1e6 / tot_r, tot_r / tot_m);
    printf("\n");
  }
  free(mine);
  free(rust);
  free(sizes);
  mimo_tok_free(t);
out:
  free(opt);
  free(files);
  return ret;
}
