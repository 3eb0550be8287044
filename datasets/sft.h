/* Supervised fine-tuning data: JSONL files in the common shapes, plain text, or a built-in task,
 * tokenized with the model's tokenizer and chat format into (tokens, targets) with the loss on the
 * completion only.
 *
 * JSONL lines (see jsonl.h): {"prompt","completion"} -> user prompt, assistant completion;
 * {"instruction","input"?,"output"} -> user "instruction\n\ninput", assistant output; {"messages":[{"role",
 * "content"}...]} as given (loss on every assistant message). Built-in tasks: the task instruction as
 * the system message, the problem as the user message, the answer as the assistant message. Each
 * conversation goes through chat_encode once (ChatML adds the template's default system prompt when a
 * file's conversation has none).
 *
 * A .txt file (one document) or .jsonl lines of {"text"} (one document each) are plain text: BOS (when
 * the tokenizer adds one) + text + EOS per document, concatenated into one stream and cut into windows
 * of seq_len inputs each, window w starting at token w*seq_len; the loss is on every token.
 *
 * Splits: with data.eval_path, that file is the eval split (same kind of data as data.path). Otherwise
 * the last eval_percent of data.path is held out (at least one example when eval_percent > 0): of its
 * examples in line order for conversations, of its windows for plain text (the train windows end where
 * the eval windows begin). Built-in tasks take train_examples / eval_examples problems from the task's
 * own splits (tasks.h). A split left empty is an error.
 *
 * get(): tokens[t] = ids[t] and targets[t] = ids[t+1] where ids[t+1] is trained (an assistant content
 * token or its end-of-turn token), else PEFTC_IGNORE_INDEX. Truncation: an example keeps its first
 * seq_len + 1 tokens (seq_len inputs and the last input's target): the prompt is kept whole when it fits;
 * what is cut is the end of the completion (counted in SftStats.truncated). An example with no trained
 * target among those tokens (the prompt fills seq_len) is dropped and counted. Padding: on the right
 * with EOS (0 when the model has none), targets ignored.
 *
 * With cache_dir, the tokenized examples are stored in <cache_dir>/<key>.tok (tokcache.h); the key
 * covers the data files' bytes, the tokenizer, the chat format and its default system prompt, seq_len,
 * the split settings and, for built-in tasks, the task, seed and example counts. */
#ifndef PEFTC_SFT_H
#define PEFTC_SFT_H

#include "datasets/chat.h"
#include "core/train/dataset.h"
#include "datasets/tasks.h"
#include "datasets/tokenizer/tokenizer.h"

typedef struct {
    char path[512];        /* data.path: .jsonl/.json lines or .txt; "" = built-in task */
    char eval_path[512];   /* data.eval_path: held-out file; "" = the last eval_percent of `path` */
    TaskKind task;         /* data.task (used when path is "") */
    int64_t train_examples, eval_examples; /* sizes of a built-in task's splits */
    int eval_percent;      /* share of a file's examples held out when there is no eval_path, 0..99 */
    int skip_bad_lines;    /* data.skip_bad_lines: report and skip instead of failing */
    char cache_dir[512];   /* tokenized cache; "" = no cache */
    uint64_t seed;
    int seq_len;
} SftConfig;

typedef struct {
    int64_t examples[2];   /* per split (SPLIT_TRAIN, SPLIT_EVAL) */
    int64_t dropped;       /* too long for seq_len: no completion token left */
    int64_t truncated;     /* kept with the end of the completion cut */
    int64_t bad_lines;     /* skipped (only with skip_bad_lines) */
    int64_t tokens;        /* input (non-padding) tokens in the train split */
    int from_cache;
} SftStats;

/* The tokenizer and template must outlive the dataset. A bad line fails with EFORMAT naming
 * "file:line" and what was wrong, unless skip_bad_lines. */
PeftcStatus sft_dataset_create(Dataset **out, const SftConfig *cfg, const Tokenizer *tok,
                               const ChatTemplate *ct, SftStats *stats);

/* For generation-based evaluation: the prompt of example `id` (the conversation before its last
 * assistant message, tokenized with the generation prompt, so it ends with the header that opens the
 * answer) and that message's text as the reference answer. For plain text: the window's input tokens
 * and a NULL answer. Pointers stay valid until the dataset is freed. */
PeftcStatus sft_prompt(const Dataset *ds, Split split, int64_t id, const int32_t **ids, int *n,
                       const char **answer);
/* The built-in task behind the dataset, or -1 for files (which compare answers by exact string match). */
int sft_task(const Dataset *ds);

#endif
