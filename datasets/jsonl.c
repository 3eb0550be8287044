/* JSONL reading: each line is parsed on its own, so one bad line costs only that line, and its
 * problem can be named with the line number. Contents are copied into one growing text pool and only
 * turned into pointers once the pool stops moving. */
#include "datasets/jsonl.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    ChatRole role;
    size_t off; /* into Builder.text, NUL-terminated */
} MsgRef;

typedef struct {
    int64_t line;
    JsonlShape shape;
    size_t first; /* into Builder.msgs */
    int n;
} ExRef;

typedef struct {
    char *text;
    size_t text_len, text_cap;
    MsgRef *msgs;
    size_t n_msgs, msgs_cap;
    ExRef *ex;
    size_t n_ex, ex_cap;
} Builder;

/* Grows *p (elements of `size`) to hold `need`; 0 on allocation failure. */
static int grow(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * size);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

/* Appends a message whose content is a, then sep and c when c is non-empty; 0 on allocation failure. */
static int add_msg(Builder *b, ChatRole role, const char *a, const char *sep, const char *c) {
    int join = c && *c;
    size_t la = strlen(a), ls = join ? strlen(sep) : 0, lc = join ? strlen(c) : 0;
    if (!grow((void **)&b->text, &b->text_cap, b->text_len + la + ls + lc + 1, 1)) return 0;
    if (!grow((void **)&b->msgs, &b->msgs_cap, b->n_msgs + 1, sizeof *b->msgs)) return 0;
    b->msgs[b->n_msgs++] = (MsgRef){role, b->text_len};
    memcpy(b->text + b->text_len, a, la);
    if (join) {
        memcpy(b->text + b->text_len + la, sep, ls);
        memcpy(b->text + b->text_len + la + ls, c, lc);
    }
    b->text_len += la + ls + lc;
    b->text[b->text_len++] = '\0';
    return 1;
}

static const char *type_name(const cJSON *j) {
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "invalid";
}

static int blank(const char *s) {
    for (; *s; s++)
        if (!isspace((unsigned char)*s)) return 0;
    return 1;
}

/* Line outcome: OK, BAD (why holds the reason) or OOM. */
enum { LINE_OK = 0, LINE_BAD = 1, LINE_OOM = 2 };

/* The string field `key` of obj into *out. Missing is fine when optional (*out = NULL). `owner` prefixes
 * the message ("messages[2]: ") when obj is not the line's object. */
static int string_field(const cJSON *obj, const char *owner, const char *key, int optional, const char **out,
                        char *why, size_t cap) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v || (optional && cJSON_IsNull(v))) {
        if (optional) return LINE_OK;
        snprintf(why, cap, "%s\"%s\" is missing", owner, key);
        return LINE_BAD;
    }
    if (!cJSON_IsString(v)) {
        snprintf(why, cap, "%s\"%s\" must be a string, got %s", owner, key, type_name(v));
        return LINE_BAD;
    }
    *out = v->valuestring;
    return LINE_OK;
}

static int non_empty(const char *s, const char *key, char *why, size_t cap) {
    if (!blank(s)) return LINE_OK;
    snprintf(why, cap, "empty \"%s\"", key);
    return LINE_BAD;
}

static int parse_prompt(Builder *b, const cJSON *obj, char *why, size_t cap) {
    const char *p, *c;
    int r = string_field(obj, "", "prompt", 0, &p, why, cap);
    if (r == LINE_OK) r = string_field(obj, "", "completion", 0, &c, why, cap);
    if (r == LINE_OK) r = non_empty(c, "completion", why, cap);
    if (r != LINE_OK) return r;
    return add_msg(b, ROLE_USER, p, "", NULL) && add_msg(b, ROLE_ASSISTANT, c, "", NULL) ? LINE_OK : LINE_OOM;
}

static int parse_instruction(Builder *b, const cJSON *obj, char *why, size_t cap) {
    const char *ins, *in, *o;
    int r = string_field(obj, "", "instruction", 0, &ins, why, cap);
    if (r == LINE_OK) r = string_field(obj, "", "input", 1, &in, why, cap);
    if (r == LINE_OK) r = string_field(obj, "", "output", 0, &o, why, cap);
    if (r == LINE_OK) r = non_empty(o, "output", why, cap);
    if (r != LINE_OK) return r;
    return add_msg(b, ROLE_USER, ins, "\n\n", in) && add_msg(b, ROLE_ASSISTANT, o, "", NULL) ? LINE_OK : LINE_OOM;
}

static int parse_role(const char *s, ChatRole *out) {
    static const char *const names[] = {[ROLE_SYSTEM] = "system", [ROLE_USER] = "user", [ROLE_ASSISTANT] = "assistant"};
    for (int i = 0; i < 3; i++)
        if (strcmp(s, names[i]) == 0) return *out = (ChatRole)i, 1;
    return 0;
}

static int parse_message(Builder *b, const cJSON *m, int i, int *assistants, char *why, size_t cap) {
    if (!cJSON_IsObject(m)) {
        snprintf(why, cap, "messages[%d] must be an object, got %s", i, type_name(m));
        return LINE_BAD;
    }
    const char *role_s, *content;
    char owner[48];
    snprintf(owner, sizeof owner, "messages[%d]: ", i);
    int r = string_field(m, owner, "role", 0, &role_s, why, cap);
    if (r == LINE_OK) r = string_field(m, owner, "content", 0, &content, why, cap);
    if (r != LINE_OK) return r;
    ChatRole role;
    if (!parse_role(role_s, &role)) {
        snprintf(why, cap, "messages[%d].role \"%.40s\" is not one of system, user, assistant", i, role_s);
        return LINE_BAD;
    }
    if (role == ROLE_ASSISTANT && blank(content)) {
        snprintf(why, cap, "messages[%d] (assistant) has empty \"content\"", i);
        return LINE_BAD;
    }
    *assistants += role == ROLE_ASSISTANT;
    return add_msg(b, role, content, "", NULL) ? LINE_OK : LINE_OOM;
}

static int parse_messages(Builder *b, const cJSON *obj, char *why, size_t cap) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, "messages");
    if (!cJSON_IsArray(arr)) {
        snprintf(why, cap, "\"messages\" must be an array, got %s", type_name(arr));
        return LINE_BAD;
    }
    int i = 0, assistants = 0;
    for (const cJSON *m = arr->child; m; m = m->next, i++) {
        int r = parse_message(b, m, i, &assistants, why, cap);
        if (r != LINE_OK) return r;
    }
    if (assistants) return LINE_OK;
    snprintf(why, cap, i ? "no assistant message in \"messages\"" : "\"messages\" is empty");
    return LINE_BAD;
}

static int parse_text(Builder *b, const cJSON *obj, char *why, size_t cap) {
    const char *t;
    int r = string_field(obj, "", "text", 0, &t, why, cap);
    if (r == LINE_OK) r = non_empty(t, "text", why, cap);
    if (r != LINE_OK) return r;
    return add_msg(b, ROLE_USER, t, "", NULL) ? LINE_OK : LINE_OOM;
}

static int unknown_shape(const cJSON *obj, char *why, size_t cap) {
    int w = snprintf(why, cap,
                     "none of the known shapes {\"prompt\",\"completion\"}, {\"instruction\",\"input\",\"output\"}, "
                     "{\"messages\"}, {\"text\"}; ");
    if (!obj->child) snprintf(why + w, cap - (size_t)w, "the object is empty");
    for (const cJSON *k = obj->child; k && (size_t)w < cap; k = k->next)
        w += snprintf(why + w, cap - (size_t)w, "%s\"%.40s\"", k == obj->child ? "keys are " : ", ", k->string);
    return LINE_BAD;
}

/* Dispatches on the keys present; the first matching shape decides which fields are required. */
static int parse_object(Builder *b, const cJSON *obj, JsonlShape *shape, char *why, size_t cap) {
#define HAS(k) cJSON_HasObjectItem(obj, k)
    if (HAS("messages")) return *shape = JSONL_MESSAGES, parse_messages(b, obj, why, cap);
    if (HAS("prompt") || HAS("completion")) return *shape = JSONL_PROMPT, parse_prompt(b, obj, why, cap);
    if (HAS("instruction") || HAS("output")) return *shape = JSONL_INSTRUCTION, parse_instruction(b, obj, why, cap);
    if (HAS("text")) return *shape = JSONL_DOCUMENT, parse_text(b, obj, why, cap);
#undef HAS
    return unknown_shape(obj, why, cap);
}

static int parse_line(Builder *b, const char *line, size_t len, JsonlShape *shape, char *why, size_t cap) {
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(line, len, &end, 0);
    if (!j) {
        size_t col = end && end >= line && end <= line + len ? (size_t)(end - line) + 1 : 1;
        snprintf(why, cap, "invalid JSON at column %zu", col);
        return LINE_BAD;
    }
    int r = LINE_BAD;
    while (end < line + len && isspace((unsigned char)*end)) end++;
    if (end < line + len)
        snprintf(why, cap, "unexpected text after the JSON value at column %zu", (size_t)(end - line) + 1);
    else if (!cJSON_IsObject(j)) snprintf(why, cap, "expected a JSON object, got %s", type_name(j));
    else r = parse_object(b, j, shape, why, cap);
    cJSON_Delete(j);
    return r;
}

typedef struct {
    const char *path, *what;
    int skip;
    int64_t bad;
    char first_bad[768];
    int kind;          /* JsonlKind, or -1 before the first good line */
    int64_t kind_line; /* the line that decided it */
} ReadState;

static void note_bad(ReadState *s, int64_t line, const char *why) {
    char msg[768];
    snprintf(msg, sizeof msg, "%s:%lld: %s", s->path, (long long)line, why);
    if (s->bad == 0) memcpy(s->first_bad, msg, sizeof msg);
    if (s->skip && s->bad < JSONL_REPORT_MAX) fprintf(stderr, "peftc: %s: skipping bad line %s\n", s->what, msg);
    s->bad++;
}

static int check_kind(ReadState *s, JsonlShape shape, int64_t line, char *why, size_t cap) {
    int kind = shape == JSONL_DOCUMENT ? JSONL_TEXT : JSONL_CHAT;
    if (s->kind < 0) {
        s->kind = kind;
        s->kind_line = line;
    }
    if (kind == s->kind) return LINE_OK;
    snprintf(why, cap, "a %s, but line %lld made this a file of %s",
             kind == JSONL_TEXT ? "{\"text\"} document" : "conversation", (long long)s->kind_line,
             s->kind == JSONL_TEXT ? "{\"text\"} documents" : "conversations");
    return LINE_BAD;
}

/* Parses one non-blank line into b, or rolls b back and notes why the line is bad. */
static int take_line(Builder *b, ReadState *s, const char *line, size_t n, int64_t ln) {
    size_t msgs0 = b->n_msgs, text0 = b->text_len;
    JsonlShape shape = JSONL_PROMPT;
    char why[512];
    int r = parse_line(b, line, n, &shape, why, sizeof why);
    if (r == LINE_OK) r = check_kind(s, shape, ln, why, sizeof why);
    if (r == LINE_OK && !grow((void **)&b->ex, &b->ex_cap, b->n_ex + 1, sizeof *b->ex)) r = LINE_OOM;
    if (r == LINE_OK) {
        b->ex[b->n_ex++] = (ExRef){ln, shape, msgs0, (int)(b->n_msgs - msgs0)};
        return LINE_OK;
    }
    b->n_msgs = msgs0;
    b->text_len = text0;
    if (r == LINE_BAD) note_bad(s, ln, why);
    return r;
}

static PeftcStatus read_lines(FILE *f, Builder *b, ReadState *s) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t ln = 0;
    PeftcStatus st = PEFTC_OK;
    while (st == PEFTC_OK && (len = getline(&line, &cap, f)) >= 0) {
        size_t n = (size_t)len;
        ln++;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        line[n] = '\0';
        if (blank(line)) continue;
        if (take_line(b, s, line, n, ln) == LINE_OOM)
            st = PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory reading %s at line %lld", s->what, s->path, (long long)ln);
    }
    if (st == PEFTC_OK && ferror(f))
        st = PEFTC_ERR(PEFTC_EIO, "%s: error reading %s after line %lld", s->what, s->path, (long long)ln);
    free(line);
    return st;
}

static PeftcStatus check_result(const ReadState *s, size_t n) {
    if (s->bad && !s->skip)
        return PEFTC_ERR(PEFTC_EFORMAT,
                         "%s (%lld bad line%s in total; data.skip_bad_lines=true reports and skips them)", s->first_bad,
                         (long long)s->bad, s->bad == 1 ? "" : "s");
    if (s->bad > JSONL_REPORT_MAX)
        fprintf(stderr, "peftc: %s: %lld more bad lines in %s not shown\n", s->what,
                (long long)(s->bad - JSONL_REPORT_MAX), s->path);
    if (!n)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: %s holds no examples (%lld bad line%s skipped)", s->what, s->path,
                         (long long)s->bad, s->bad == 1 ? "" : "s");
    return PEFTC_OK;
}

/* Moves the builder's storage into out, turning offsets into pointers now that the pool is final. */
static PeftcStatus finish(Builder *b, const ReadState *s, JsonlFile *out) {
    out->msgs_ = malloc((b->n_msgs ? b->n_msgs : 1) * sizeof *out->msgs_);
    out->ex = malloc((b->n_ex ? b->n_ex : 1) * sizeof *out->ex);
    if (!out->msgs_ || !out->ex) {
        jsonl_free(out);
        free(b->text);
        free(b->msgs);
        free(b->ex);
        return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory for %zu examples of %s", s->what, b->n_ex, s->path);
    }
    for (size_t i = 0; i < b->n_msgs; i++) out->msgs_[i] = (ChatMessage){b->msgs[i].role, b->text + b->msgs[i].off};
    for (size_t i = 0; i < b->n_ex; i++)
        out->ex[i] = (JsonlExample){b->ex[i].line, b->ex[i].shape, b->ex[i].n, out->msgs_ + b->ex[i].first};
    out->text_ = b->text;
    out->n = (int64_t)b->n_ex;
    out->kind = (JsonlKind)s->kind;
    out->bad_lines = s->bad;
    free(b->msgs);
    free(b->ex);
    return PEFTC_OK;
}

PeftcStatus jsonl_read(JsonlFile *out, const char *path, const char *what, int skip_bad_lines) {
    if (!out || !path) return PEFTC_ERR(PEFTC_EINVAL, "jsonl_read: out and path must not be NULL");
    memset(out, 0, sizeof *out);
    if (!what) what = "data file";
    FILE *f = fopen(path, "rb");
    if (!f) return PEFTC_ERR(PEFTC_EIO, "%s: cannot open %s: %s", what, path, strerror(errno));
    Builder b = {0};
    ReadState s = {.path = path, .what = what, .skip = skip_bad_lines, .kind = -1};
    PeftcStatus st = read_lines(f, &b, &s);
    fclose(f);
    if (st == PEFTC_OK) st = check_result(&s, b.n_ex);
    if (st == PEFTC_OK) return finish(&b, &s, out);
    free(b.text);
    free(b.msgs);
    free(b.ex);
    return st;
}

void jsonl_free(JsonlFile *f) {
    if (!f) return;
    free(f->ex);
    free(f->msgs_);
    free(f->text_);
    memset(f, 0, sizeof *f);
}
