/* What makes an HF folder peftc writes (peftc merge, the model full fine-tuning and GMT save) load
 * anywhere, beside the config.json and weights the model family writes: the tokenizer
 * (tokenizer.json, tokenizer_config.json with the chat template and special tokens), the token ids
 * and context length in config.json, and generation_config.json. */
#ifndef PEFTC_HF_COMPANIONS_H
#define PEFTC_HF_COMPANIONS_H

#include "launch/session.h"

/* dir already holds the family's config.json. Files come from the folder the tokenizer was read from
 * (data.tokenizer or the model's) when it has them; a GGUF model's are written from its metadata. */
PeftcStatus hf_companions_write(const Session *s, const char *dir);

#endif
