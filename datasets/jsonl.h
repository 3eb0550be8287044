/* Reading a JSONL data file into text examples, one JSON object per line.
 *
 * Shapes, each becoming a conversation:
 *   {"prompt": P, "completion": C}                      -> user P, assistant C
 *   {"instruction": I, "input": X (optional), "output": O} -> user "I\n\nX" (just I when X is absent or
 *                                                          empty), assistant O
 *   {"messages": [{"role": "system"|"user"|"assistant", "content": S}, ...]} -> as given
 *   {"text": S}                                          -> a plain-text document (one ROLE_USER message)
 * Other keys on a line are ignored. Blank lines are skipped. The first good line decides whether the
 * file holds conversations or text documents; a line of the other kind is a bad line.
 *
 * A bad line is invalid JSON, not an object, none of the shapes, a field of the wrong type, an empty
 * completion/output/assistant message/text, a message with an unknown role, or a conversation with no
 * assistant message. Each is described as "file:line: what was wrong". Without skip_bad_lines the read
 * fails (EFORMAT) with the first bad line's message and the total count of bad lines; with it, bad lines
 * are printed to stderr (the first JSONL_REPORT_MAX of them), counted and skipped. */
#ifndef PEFTC_JSONL_H
#define PEFTC_JSONL_H

#include <stdint.h>

#include "core/base/status.h"
#include "datasets/chat.h"

enum { JSONL_REPORT_MAX = 100 };

typedef enum { JSONL_CHAT = 0, JSONL_TEXT = 1 } JsonlKind;
typedef enum { JSONL_PROMPT = 0, JSONL_INSTRUCTION, JSONL_MESSAGES, JSONL_DOCUMENT } JsonlShape;

typedef struct {
    int64_t line;            /* 1-based line in the file */
    JsonlShape shape;
    int n_msgs;
    const ChatMessage *msgs; /* (n_msgs); contents owned by the JsonlFile */
} JsonlExample;

typedef struct {
    JsonlKind kind;
    int64_t n;               /* good examples, in line order */
    JsonlExample *ex;        /* (n) */
    int64_t bad_lines;       /* skipped (only with skip_bad_lines; otherwise the read fails) */
    ChatMessage *msgs_;      /* storage behind ex[].msgs */
    char *text_;             /* storage behind the contents */
} JsonlFile;

/* Reads `path`; `what` names the setting it came from ("data.path") for messages about the file as
 * a whole. On failure *out is left empty (safe to jsonl_free). */
PeftcStatus jsonl_read(JsonlFile *out, const char *path, const char *what, int skip_bad_lines);
void jsonl_free(JsonlFile *f);

#endif
