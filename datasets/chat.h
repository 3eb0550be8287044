/* Chat formats for instruction data, recognised from the model's chat template (no Jinja engine):
 * ChatML (SmolLM2, Qwen), LLaMA-3, and plain "prompt + completion". */
#ifndef PEFTC_CHAT_H
#define PEFTC_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "datasets/tokenizer/tokenizer.h"

typedef enum { CHAT_PLAIN = 0, CHAT_CHATML, CHAT_LLAMA3 } ChatFormat;

extern const char *const chat_format_names[]; /* indexed by ChatFormat, NULL-terminated */

/* Recognises a template text (tokenizer.chat_template / tokenizer_config.json's chat_template):
 * "<|im_start|>" -> ChatML, "<|start_header_id|>" -> LLaMA-3, NULL or anything else -> plain. */
ChatFormat chat_detect(const char *template_text);
/* The default system prompt a template injects when the conversation has none (ChatML templates such
 * as SmolLM2's), copied into buf; "" when none. */
void chat_default_system(const char *template_text, char *buf, size_t n);

typedef enum { ROLE_SYSTEM = 0, ROLE_USER, ROLE_ASSISTANT } ChatRole;

typedef struct {
    ChatRole role;
    const char *content;
} ChatMessage;

typedef struct {
    ChatFormat format;
    const char *default_system; /* used by ChatML when the conversation has no system message; may be "" */
} ChatTemplate;

/* Tokenizes a conversation. ids/mask grow as in tok_encode; mask[i] = 1 for tokens the loss is taken
 * on (assistant contents and their end-of-turn token), 0 for everything else. With add_generation
 * prompt, ends with the header that opens an assistant turn (for generation). PLAIN joins contents with
 * no markers: the user part is masked, the assistant part is not, and EOS ends the assistant part. */
PeftcStatus chat_encode(const ChatTemplate *ct, const Tokenizer *tok, const ChatMessage *msgs, int n_msgs,
                        int add_generation_prompt, int32_t **ids, uint8_t **mask, size_t *n, size_t *cap);

/* Token ids that end an assistant turn for this format (EOS, <|im_end|>, <|eot_id|>); returns count. */
int chat_stop_ids(const ChatTemplate *ct, const Tokenizer *tok, int32_t *out, int max);

#endif
