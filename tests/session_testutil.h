/* Sessions on the transformers fixtures for the suites that compare against them. */
#ifndef PEFTC_SESSION_TESTUTIL_H
#define PEFTC_SESSION_TESTUTIL_H

#include <check.h>
#include <stdio.h>

#include "launch/session.h"

/* The tiny LLaMA transformers wrote (tests/fixtures/hf_tiny_llama) with the PEFT adapter in folder
 * `adapter` loaded through lora.init_from, dropout off: model and method only (session_open_model). */
static inline void tu_open_hf_tiny(Session *s, const char *adapter) {
    static RunConfig c;
    config_defaults(&c);
    ck_assert_int_eq(config_apply_override(&c, "model.path=" PEFTC_FIXTURE_DIR "/hf_tiny_llama"), PEFTC_OK);
    snprintf(lora_settings(&c.methods)->init_from, sizeof lora_settings(&c.methods)->init_from, "%s", adapter);
    lora_settings(&c.methods)->lora.dropout = 0;
    ck_assert_msg(session_resolve_model(&c) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_msg(session_open_model(s, &c) == PEFTC_OK, "%s", peftc_err_msg());
}

#endif
