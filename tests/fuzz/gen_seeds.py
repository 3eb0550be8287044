#!/usr/bin/env python3
"""Writes the small seed inputs of the fuzz harnesses into tests/fuzz/corpus/<harness>/ (stdlib only).

Small fixtures are copied; the formats the fixtures lack as small valid files (a whole LLaMA GGUF with
a tokenizer, a safetensors file of every dtype, a shard index, a RoSA mask, an EigenLoRAx basis, a
YAML job) are written here. Re-run after changing a format or a fixture:
    python3 tests/fuzz/gen_seeds.py
"""
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
FIXTURES = os.path.join(HERE, "..", "fixtures")


def copy(harness, name, fixture):
    d = os.path.join(CORPUS, harness)
    os.makedirs(d, exist_ok=True)
    shutil.copyfile(os.path.join(FIXTURES, fixture), os.path.join(d, name))


def put(harness, name, data):
    d = os.path.join(CORPUS, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- GGUF ----
U32, I32, F32, BOOL, STR, ARR = 4, 5, 6, 7, 8, 9


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gkv(key, typ, val):
    out = gstr(key) + struct.pack("<I", typ)
    if typ == U32:
        return out + struct.pack("<I", val)
    if typ == F32:
        return out + struct.pack("<f", val)
    if typ == BOOL:
        return out + struct.pack("<B", val)
    if typ == STR:
        return out + gstr(val)
    etype, items = val
    out += struct.pack("<IQ", etype, len(items))
    for it in items:
        out += gstr(it) if etype == STR else struct.pack("<i", it)
    return out


def gguf(kvs, tensors):
    """tensors: (name, ne, ggml type, raw bytes); data aligned to 32."""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(gkv(*kv) for kv in kvs)
    data, infos = b"", b""
    for name, ne, typ, raw in tensors:
        data += b"\0" * (-len(data) % 32)
        infos += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        infos += struct.pack("<IQ", typ, len(data))
        data += raw
    blob = head + infos
    return blob + b"\0" * (-len(blob) % 32) + data


def f32s(n, scale=0.01):
    return b"".join(struct.pack("<f", scale * ((i * 37 % 19) - 9)) for i in range(n))


def f16s(n):
    return b"".join(struct.pack("<e", 0.01 * ((i * 37 % 19) - 9)) for i in range(n))


def q8_0_row(n):  # blocks of 32: f16 scale + 32 int8
    return b"".join(struct.pack("<e", 0.01) + bytes((i * 7) % 256 for i in range(32)) for _ in range(n // 32))


def tiny_llama_gguf():
    C, I, NH, NKV, HD, V = 8, 16, 2, 1, 4, 10
    tokens = ["a", "b", "c", "Ġ", "ab", "Ġa", "1", "<|im_start|>", "<|im_end|>", "<|endoftext|>"]
    kvs = [("general.architecture", STR, "llama"), ("general.name", STR, "fuzz seed"),
           ("llama.block_count", U32, 1), ("llama.embedding_length", U32, C),
           ("llama.feed_forward_length", U32, I), ("llama.attention.head_count", U32, NH),
           ("llama.attention.head_count_kv", U32, NKV), ("llama.context_length", U32, 64),
           ("llama.rope.freq_base", F32, 10000.0), ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
           ("tokenizer.ggml.model", STR, "gpt2"), ("tokenizer.ggml.pre", STR, "smollm"),
           ("tokenizer.ggml.tokens", ARR, (STR, tokens)),
           ("tokenizer.ggml.token_type", ARR, (I32, [1] * 7 + [3] * 3)),
           ("tokenizer.ggml.merges", ARR, (STR, ["a b", "Ġ a"])),
           ("tokenizer.ggml.bos_token_id", U32, 9), ("tokenizer.ggml.eos_token_id", U32, 8),
           ("tokenizer.ggml.add_bos_token", BOOL, 0), ("tokenizer.chat_template", STR, "<|im_start|>")]
    t = [("token_embd.weight", [C, V], 0, f32s(C * V)), ("output_norm.weight", [C], 0, f32s(C, 1)),
         ("blk.0.attn_norm.weight", [C], 0, f32s(C, 1)), ("blk.0.ffn_norm.weight", [C], 0, f32s(C, 1)),
         ("blk.0.attn_q.weight", [C, NH * HD], 1, f16s(C * NH * HD)),
         ("blk.0.attn_k.weight", [C, NKV * HD], 0, f32s(C * NKV * HD)),
         ("blk.0.attn_v.weight", [C, NKV * HD], 30, f16s(C * NKV * HD)),  # stored as BF16-sized bytes
         ("blk.0.attn_output.weight", [NH * HD, C], 0, f32s(C * NH * HD)),
         ("blk.0.ffn_gate.weight", [C, I], 0, f32s(C * I)), ("blk.0.ffn_up.weight", [C, I], 0, f32s(C * I)),
         ("blk.0.ffn_down.weight", [I, C], 0, f32s(C * I))]
    return gguf(kvs, t)


def quant_gguf():
    """A tensor of each block type the dequantizer handles (one 32-element row, one 256 for K types)."""
    t = [("q8", [32], 8, q8_0_row(32)), ("q4_0", [32], 2, struct.pack("<e", 0.1) + bytes(range(16))),
         ("q4_k", [256], 12, bytes(144)), ("q6_k", [256], 14, bytes(210)), ("q5_k", [256], 13, bytes(176))]
    return gguf([("general.alignment", U32, 32)], t)


# ---- safetensors ----
def safetensors(tensors, meta=None):
    """tensors: (name, dtype, shape, raw)."""
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def i32s(vals):
    return b"".join(struct.pack("<i", v) for v in vals)


def main():
    llama = tiny_llama_gguf()
    put("gguf", "tiny_llama.gguf", llama)
    put("gguf", "quant_types.gguf", quant_gguf())
    put("model_gguf", "tiny_llama.gguf", llama)
    put("safetensors", "mixed.safetensors", safetensors(
        [("a", "F32", [2, 3], f32s(6)), ("b", "F16", [4], f16s(4)), ("c", "BF16", [2], bytes(4)),
         ("d", "I32", [3], i32s([1, 2, 3])), ("e", "F64", [1], struct.pack("<d", 1.5)), ("f", "U8", [2], b"\1\2")],
        {"format": "pt"}))
    # EigenLoRAx basis: one module, A (in 8, 3 columns) and B (out 8, 3 columns)
    put("eigen_basis", "basis.safetensors", safetensors(
        [("model.layers.0.self_attn.q_proj.eigen_A", "F32", [8, 3], f32s(24)),
         ("model.layers.0.self_attn.q_proj.eigen_B", "F32", [8, 3], f32s(24))],
        {"format": "peftc-eigenlora", "r": "2", "k": "2", "k_rand": "1", "seed": "7", "sources": "a,b"}))
    # RoSA masks for the fuzz model's q_proj (out 8, in 8: 3 non-zeros) and v_proj (out 4, in 8: 1)
    rosa = []
    for proj, row_ptr, cols in (("q_proj", [0, 1, 1, 2, 2, 2, 3, 3, 3], [0, 5, 7]), ("v_proj", [0, 0, 1, 1, 1], [6])):
        pre = "base_model.model.model.layers.0.self_attn.%s.rosa_S." % proj
        rosa += [(pre + "row_ptr", "I32", [len(row_ptr)], i32s(row_ptr)),
                 (pre + "col_idx", "I32", [len(cols)], i32s(cols)), (pre + "values", "F32", [len(cols)], f32s(len(cols)))]
    put("rosa_mask", "mask.safetensors", safetensors(rosa, {"format": "peftc-rosa"}))

    copy("safetensors", "peft_adapter.safetensors", "hf_tiny_lora/adapter_model.safetensors")
    copy("hf_config", "tiny_llama.json", "hf_tiny_llama/config.json")
    put("hf_config", "qwen2.json", json.dumps({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 64, "intermediate_size": 160,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 128,
        "rope_theta": 1e6, "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "use_sliding_window": False,
        "hidden_act": "silu", "max_position_embeddings": 512}))
    names = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"] + [
        "model.layers.%d.%s" % (l, t) for l in range(2) for t in
        ("input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.weight",
         "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight", "mlp.gate_proj.weight",
         "mlp.up_proj.weight", "mlp.down_proj.weight")]
    put("st_index", "index.json", json.dumps(
        {"metadata": {"total_size": 413000}, "weight_map": {n: "model-00001-of-00001.safetensors" for n in names}}))
    for tk in ("gpt2", "llama3", "smollm", "qwen2"):
        with open(os.path.join(FIXTURES, "tokenizer", tk, "tokenizer.json"), "rb") as f:
            tj = f.read()
        with open(os.path.join(FIXTURES, "tokenizer", tk, "tokenizer_config.json"), "rb") as f:
            tc = f.read()
        put("tokenizer", tk + ".json", tj + b"\0" + tc)  # harness: tokenizer.json NUL tokenizer_config.json
    for f in ("instruction.jsonl", "messages.jsonl", "prompt.jsonl", "text.jsonl", "bad.jsonl"):
        copy("jsonl", f, os.path.join("sft", f))
    copy("peft_config", "peft.json", "hf_tiny_lora/adapter_config.json")
    copy("peft_config", "peftc_export.json", "peftc_export_tiny/adapter_config.json")
    put("config_yaml", "job.yaml", """# every section once
model: {path: "", init_std: 0.02, seed: 3}
method: {name: rosa}
lora: {r: 16, alpha: 32, dropout: 0.05, targets: [q, k, v, o]}
rosa: {density: 0.01, warmup: 2, grad_steps: 2}
train: {steps: 40, micro_batch: 4, accum: 1, seq_len: 96, seed: 1}
optim: {lr: 1.0e-3, weight_decay: 0.0}
data: {task: records}
eval: {examples: 64, max_new_tokens: 48}
output: {dir: runs/x, log_every: 10}
checkpoint: {every: 0, keep: 2, resume: auto}
""")
    put("config_yaml", "flow.yaml", "train:\n  steps: 5\n  accum: 2\nlora:\n  targets:\n    - q\n    - v\n")


if __name__ == "__main__":
    main()
