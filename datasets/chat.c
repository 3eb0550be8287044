/* Chat formats. Each conversation is encoded segment by segment: markers with special tokens allowed,
 * message contents without (so user text cannot inject control tokens), which also gives the loss mask
 * exact token boundaries. Every marker ends in a special token or a line break that the pre-tokenizers
 * split off, so this matches tokenizing the template's rendered text as one string, unless a content
 * starts with whitespace that would have joined the marker's line break in one piece.
 *
 *   CHATML  [<|im_start|>system\n{default}<|im_end|>\n] then per message
 *           <|im_start|>{role}\n{content}<|im_end|>\n; generation prompt <|im_start|>assistant\n
 *   LLAMA3  <|begin_of_text|> then per message
 *           <|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>
 *   PLAIN   [BOS if the tokenizer adds one] then per message: system/user content + "\n",
 *           assistant content + EOS.
 * The default system prompt, when not "", opens a conversation that has no system message (all
 * formats). Mask: assistant contents and the token that ends them. */
#include "datasets/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const chat_format_names[] = {"plain", "chatml", "llama3", NULL};

static const char *const role_names[] = {"system", "user", "assistant"};

ChatFormat chat_detect(const char *template_text) {
    if (!template_text) return CHAT_PLAIN;
    if (strstr(template_text, "<|im_start|>")) return CHAT_CHATML;
    if (strstr(template_text, "<|start_header_id|>")) return CHAT_LLAMA3;
    return CHAT_PLAIN;
}

/* The Jinja string literal text s[0..len) unescaped into buf; 0 when it holds an unescaped `quote`
 * (then it is not one literal but an expression such as '...' + messages[0]['content'] + '...'). */
static int unescape(const char *s, size_t len, char quote, char *buf, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (quote && c == quote) return 0;
        if (!quote && (c == '{' || c == '}')) return 0;
        if (quote && c == '\\' && i + 1 < len) {
            c = s[++i];
            c = c == 'n' ? '\n' : c == 't' ? '\t' : c;
        }
        if (o + 1 < n) buf[o++] = c;
    }
    if (n) buf[o] = '\0';
    return 1;
}

void chat_default_system(const char *template_text, char *buf, size_t n) {
    static const char open[] = "<|im_start|>system", close[] = "<|im_end|>";
    if (n) buf[0] = '\0';
    for (const char *p = template_text ? strstr(template_text, open) : NULL; p; p = strstr(p + 1, open)) {
        const char *body = p + strlen(open);
        if (*body == '\n') body += 1;
        else if (body[0] == '\\' && body[1] == 'n') body += 2;
        else continue;
        const char *end = strstr(body, close);
        if (!end) return;
        char quote = p > template_text && (p[-1] == '\'' || p[-1] == '"') ? p[-1] : 0;
        if (end > body && unescape(body, (size_t)(end - body), quote, buf, n)) return;
        if (n) buf[0] = '\0';
    }
}

typedef struct {
    const Tokenizer *tok;
    int32_t **ids;
    uint8_t **mask;
    size_t *n, *cap;
    size_t mask_cap; /* what *mask holds: grown only when *cap outgrows it, so appending stays linear */
} Seq;

/* Keeps the mask as large as the id array (both have capacity *cap). */
static PeftcStatus mask_follow(Seq *q, size_t from, int train) {
    if (!*q->mask || q->mask_cap < *q->cap) {
        size_t cap = *q->cap ? *q->cap : 1;
        uint8_t *m = realloc(*q->mask, cap);
        if (!m) return PEFTC_ERR(PEFTC_ENOMEM, "chat: out of memory for %zu mask entries", cap);
        *q->mask = m;
        q->mask_cap = cap;
    }
    memset(*q->mask + from, train, *q->n - from);
    return PEFTC_OK;
}

static PeftcStatus seg(Seq *q, const char *text, int special, int train) {
    size_t from = *q->n;
    PEFTC_TRY(tok_encode(q->tok, text, strlen(text), special, q->ids, q->n, q->cap));
    return mask_follow(q, from, train);
}

static PeftcStatus one(Seq *q, int32_t id, int train) {
    if (*q->n == *q->cap) {
        size_t cap = *q->cap ? 2 * *q->cap : 64;
        int32_t *ids = realloc(*q->ids, cap * sizeof *ids);
        if (!ids) return PEFTC_ERR(PEFTC_ENOMEM, "chat: out of memory for %zu token ids", cap);
        *q->ids = ids;
        *q->cap = cap;
    }
    (*q->ids)[(*q->n)++] = id;
    return mask_follow(q, *q->n - 1, train);
}

static PeftcStatus need_special(const Tokenizer *tok, ChatFormat f, const char *piece) {
    int id = tok_find(tok, piece);
    if (id < 0 || !tok_is_special(tok, id))
        return PEFTC_ERR(PEFTC_EINVAL, "chat format %s needs the special token %s, which the tokenizer lacks",
                         chat_format_names[f], piece);
    return PEFTC_OK;
}

static PeftcStatus chatml_turn(Seq *q, ChatRole role, const char *content) {
    char head[64];
    snprintf(head, sizeof head, "<|im_start|>%s\n", role_names[role]);
    int train = role == ROLE_ASSISTANT;
    PEFTC_TRY(seg(q, head, 1, 0));
    PEFTC_TRY(seg(q, content, 0, train));
    PEFTC_TRY(seg(q, "<|im_end|>", 1, train));
    return seg(q, "\n", 0, 0);
}

static PeftcStatus llama3_turn(Seq *q, ChatRole role, const char *content) {
    char head[96];
    snprintf(head, sizeof head, "<|start_header_id|>%s<|end_header_id|>\n\n", role_names[role]);
    int train = role == ROLE_ASSISTANT;
    PEFTC_TRY(seg(q, head, 1, 0));
    PEFTC_TRY(seg(q, content, 0, train));
    return seg(q, "<|eot_id|>", 1, train);
}

static PeftcStatus plain_turn(Seq *q, ChatRole role, const char *content) {
    if (role == ROLE_ASSISTANT) {
        PEFTC_TRY(seg(q, content, 0, 1));
        return one(q, tok_eos(q->tok), 1);
    }
    /* One segment with its line break, as the prompt is encoded at generation time. */
    size_t len = strlen(content);
    char *line = malloc(len + 2);
    if (!line) return PEFTC_ERR(PEFTC_ENOMEM, "chat: out of memory for a message of %zu bytes", len);
    memcpy(line, content, len);
    memcpy(line + len, "\n", 2);
    PeftcStatus st = seg(q, line, 0, 0);
    free(line);
    return st;
}

static PeftcStatus turn(Seq *q, ChatFormat f, ChatRole role, const char *content) {
    if ((int)role < 0 || role > ROLE_ASSISTANT) return PEFTC_ERR(PEFTC_EINVAL, "chat: unknown role %d", (int)role);
    if (!content) return PEFTC_ERR(PEFTC_EINVAL, "chat: a %s message has no content", role_names[role]);
    if (f == CHAT_CHATML) return chatml_turn(q, role, content);
    if (f == CHAT_LLAMA3) return llama3_turn(q, role, content);
    return plain_turn(q, role, content);
}

static PeftcStatus check_tokens(const ChatTemplate *ct, const Tokenizer *tok) {
    if (ct->format == CHAT_CHATML) {
        PEFTC_TRY(need_special(tok, ct->format, "<|im_start|>"));
        return need_special(tok, ct->format, "<|im_end|>");
    }
    if (ct->format == CHAT_LLAMA3) {
        static const char *const marks[] = {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                                            "<|eot_id|>"};
        for (int i = 0; i < 4; i++) PEFTC_TRY(need_special(tok, ct->format, marks[i]));
        return PEFTC_OK;
    }
    if (ct->format == CHAT_PLAIN) {
        if (tok_eos(tok) < 0)
            return PEFTC_ERR(PEFTC_EINVAL, "chat format plain ends answers with EOS, and the tokenizer has none");
        return PEFTC_OK;
    }
    return PEFTC_ERR(PEFTC_EINVAL, "chat: unknown format %d", (int)ct->format);
}

PeftcStatus chat_encode(const ChatTemplate *ct, const Tokenizer *tok, const ChatMessage *msgs, int n_msgs,
                        int add_generation_prompt, int32_t **ids, uint8_t **mask, size_t *n, size_t *cap) {
    PEFTC_TRY(check_tokens(ct, tok));
    /* The caller's mask, if any, is as large as its ids: chat.h's contract for the pair. */
    Seq q = {tok, ids, mask, n, cap, *mask ? *cap : 0};
    ChatFormat f = ct->format;
    if (f == CHAT_LLAMA3) PEFTC_TRY(seg(&q, "<|begin_of_text|>", 1, 0));
    if (f == CHAT_PLAIN && tok_add_bos(tok) && tok_bos(tok) >= 0) PEFTC_TRY(one(&q, tok_bos(tok), 0));
    if (n_msgs > 0 && msgs[0].role != ROLE_SYSTEM && ct->default_system && ct->default_system[0])
        PEFTC_TRY(turn(&q, f, ROLE_SYSTEM, ct->default_system));
    for (int i = 0; i < n_msgs; i++) PEFTC_TRY(turn(&q, f, msgs[i].role, msgs[i].content));
    if (add_generation_prompt && f == CHAT_CHATML) PEFTC_TRY(seg(&q, "<|im_start|>assistant\n", 1, 0));
    if (add_generation_prompt && f == CHAT_LLAMA3)
        PEFTC_TRY(seg(&q, "<|start_header_id|>assistant<|end_header_id|>\n\n", 1, 0));
    return mask_follow(&q, *n, 0); /* the mask exists even for an empty conversation */
}

static int add_stop(int32_t *out, int n, int max, int id) {
    if (id < 0 || n >= max) return n;
    for (int i = 0; i < n; i++)
        if (out[i] == id) return n;
    out[n] = id;
    return n + 1;
}

int chat_stop_ids(const ChatTemplate *ct, const Tokenizer *tok, int32_t *out, int max) {
    int n = 0;
    if (ct->format == CHAT_CHATML) n = add_stop(out, n, max, tok_find(tok, "<|im_end|>"));
    if (ct->format == CHAT_LLAMA3) {
        n = add_stop(out, n, max, tok_find(tok, "<|eot_id|>"));
        n = add_stop(out, n, max, tok_find(tok, "<|end_of_text|>"));
    }
    return add_stop(out, n, max, tok_eos(tok));
}
