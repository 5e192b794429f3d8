"""Hugging Face parity fixtures for durable-rl's model engine (issue 11), written by transformers itself.

What it does
  Trains one tiny byte-level BPE tokenizer (300 tokens) on the corpus below, builds eight tiny random
  models of the architectures durable-rl loads (Llama, Qwen2, Qwen3, Qwen3 with YaRN, SmolLM2, Llama with
  linear RoPE and biases, Mistral, GPT-2), saves each as a Hugging Face directory, and computes from the
  saved weights, in float64, what a TypeScript unit test holds the engine to: token logprobs of a
  left-padded batch, the masked mean loss, the global and per-parameter gradient norms, chat-template
  renderings with their token ids, the generation config's eos ids, and a plain tokenisation.
  Every directory gets config.json (transformers 5 form) and config.v4.json (transformers 4 form);
  the tool asserts that transformers loads both to the same RoPE parameters.

  `check-export DIR [--expect FILE]` instead loads a directory (durable-rl's export, say) with
  transformers, offline: model, tokenizer, generation config, a rendered chat prompt and a float32
  forward; with --expect (JSON {input_ids, attention_mask, logprobs}, the conventions of
  expected.json) it prints the largest logprob difference and fails above --tol.

How to run it (by hand only: never from tests or CI)
  python3.11 -m venv /tmp/pyfx
  /tmp/pyfx/bin/pip install torch==2.15.0 transformers==5.23.0 tokenizers==0.23.3 peft==0.21.2 \
      safetensors==0.8.0 numpy==2.4.6
  /tmp/pyfx/bin/python bench/hf-fixtures/make_fixtures.py test/fixtures/hf
  /tmp/pyfx/bin/python bench/hf-fixtures/make_fixtures.py check-export DIR --expect FILE

Pinned versions (written into every expected.json; making fixtures refuses to run under others)
  torch 2.15.0, transformers 5.23.0, tokenizers 0.23.3, peft 0.21.2, safetensors 0.8.0, numpy 2.4.6.
  peft makes the LoRA fixtures (`<fixture>/lora/`, see LORA below).

LoRA (PEFT's `LoraConfig`): for the llama-family fixtures in LORA_FIXTURES, an adapter of rank 4, alpha 8
on every linear module of the blocks, with seeded nonzero A and B (PEFT would start B at zero, which
would hide the adapter), saved by PEFT itself (`lora/adapter_config.json`,
`lora/adapter_model.safetensors`, float32), and `lora/expected.json`: logprobs, loss and the adapter
parameters' gradient norms on the fixture's batch, in float64 with the base weights frozen.
`lora ROOT` redoes only this part over existing fixtures.

Deterministic: fixed seeds, one CPU thread, sorted JSON; two runs write byte-identical files.

The reference is float64 except where transformers itself computes in float32: the RoPE angles. Its
stock eager attention would also take the softmax in float32, which turns left padding into NaN in a
float64 model, so the reference registers the same attention with the softmax in float64
(eager_float64_attention), and checks stock float32 eager against it (FLOAT32_AGREEMENT).
"""

import argparse
import json
import math
import os
import random
import shutil
import sys
import tempfile
import zlib
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy  # noqa: E402
import safetensors  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    AttentionInterface,
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)
from transformers.masking_utils import AttentionMaskInterface, eager_mask  # noqa: E402

transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()

PINNED = {
    "torch": "2.15.0",
    "transformers": "5.23.0",
    "tokenizers": "0.23.3",
    "peft": "0.21.2",
    "safetensors": "0.8.0",
    "numpy": "2.4.6",
}

# What a transformers-4 checkpoint of the same model would say it was written by (config.v4.json).
V4_TRANSFORMERS_VERSION = "4.57.1"

# ---------------------------------------------------------------------------------------------
# The tokenizer
# ---------------------------------------------------------------------------------------------

TOKENIZER_VOCAB = 300
# The embedding matrices are padded past the tokenizer, to a multiple of 64, as Qwen pads its own.
MODEL_VOCAB = 320
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]

SENTENCES = """\
The cat sat on the mat and looked at the door.
A small dog ran across the garden after a red ball.
We walked to the station in the rain and missed the train.
She wrote the numbers down in a blue notebook.
Two plus two is four, and three plus four is seven.
The answer is written after the equals sign.
Please add the two numbers and give only the result.
He counted twelve apples, then ate one of them.
The river is wide here, and the bridge is old.
Every morning the baker opens the shop at six.
Reading a long book on a quiet evening is a pleasure.
The teacher asked the class to check each sum twice.
Mountains rise to the north of the little town.
A good answer is short, correct and easy to read.
They planted tomatoes, beans and a row of sunflowers.
The clock on the wall stopped at half past nine.
If you carry the one, the sum comes out right.
My brother likes to solve puzzles before breakfast.
The library closes early on Sundays.
Birds sang in the trees while we had lunch outside.
Write the result of the addition on a new line.
The test has ten questions and each one is worth a point.
Our team trained for weeks before the final match.
The museum shows paintings from many centuries.
Turn left at the bakery and the school is on your right.
Numbers can be added in any order: 3+5 equals 5+3.
A careful student checks the last digit first.
The weather was cold, but the sky was clear and bright.
Grandmother told us a story about the sea.
The program prints the total and then stops.
Light travels faster than sound, so we see lightning first.
The market sells fresh bread, cheese and fruit.
Adding zero to a number leaves the number unchanged.
The children built a tall tower out of wooden blocks.
At night the city lights shine on the water.
He forgot his umbrella at the office again.
A triangle has three sides and three corners.
The train to the coast leaves every hour.
She smiled and said the answer was forty six.
We need more paper for the printer upstairs.
""".splitlines()

CHAT_LINES = """\
<|im_start|>system
You are a helpful assistant.<|im_end|>
<|im_start|>user
What is 12+34?<|im_end|>
<|im_start|>assistant
12+34=46<|im_end|>
<|im_start|>user
Thank you! And 7+8?<|im_end|>
<|im_start|>assistant
7+8=15<|im_end|>
<|begin_of_text|><|start_header_id|>system<|end_header_id|>

You answer with the sum only.<|eot_id|><|start_header_id|>user<|end_header_id|>

Add 21 and 45.<|eot_id|><|start_header_id|>assistant<|end_header_id|>

66<|eot_id|>
user: can you add 9 and 10?
assistant: 9+10=19
user: and 100+23?
assistant: 100+23=123
""".splitlines()


def corpus():
    """About 360 lines: 300 sums written three ways, English sentences, chat transcripts."""
    rng = random.Random(11)
    sums = []
    for i in range(300):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        form = i % 3
        if form == 0:
            sums.append(f"{a}+{b}={a + b}")
        elif form == 1:
            sums.append(f"{a} + {b} = {a + b}")
        else:
            sums.append(f"What is {a}+{b}? It is {a + b}.")
    return sums + SENTENCES + CHAT_LINES


def train_tokenizer():
    """The byte-level BPE shared by every fixture: 256 byte symbols, 7 special tokens, 37 merges."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer)
    assert tok.get_vocab_size() == TOKENIZER_VOCAB, tok.get_vocab_size()
    return tok


# Qwen's ChatML: every message is <|im_start|>{role}\n{content}<|im_end|>\n; the generation prompt opens
# an assistant turn. No bos token.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)

# Llama 3: bos once, then a header per message and the trimmed content closed by <|eot_id|>; the
# generation prompt is an empty assistant header.
LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{{- message['content'] | trim }}"
    "{{- '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}"
)


def render_chatml(messages, add_generation_prompt):
    """What CHATML_TEMPLATE must render, built by hand (the template is checked against it)."""
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def render_llama3(messages, add_generation_prompt):
    """What LLAMA3_TEMPLATE must render, built by hand."""
    text = "<|begin_of_text|>" + "".join(
        f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content'].strip()}<|eot_id|>" for m in messages
    )
    return text + ("<|start_header_id|>assistant<|end_header_id|>\n\n" if add_generation_prompt else "")


# Each chat family: its template, special tokens, eos ids of the generation config (several where the
# real family stops on several), and the hand renderer the template is checked against.
FAMILIES = {
    "chatml": {
        "template": CHATML_TEMPLATE,
        "bos": None,
        "eos": "<|im_end|>",
        "pad": "<|endoftext|>",
        "generation_eos": ["<|im_end|>", "<|endoftext|>"],
        "render": render_chatml,
    },
    "llama3": {
        "template": LLAMA3_TEMPLATE,
        "bos": "<|begin_of_text|>",
        "eos": "<|eot_id|>",
        "pad": None,
        "generation_eos": ["<|endoftext|>", "<|eot_id|>"],
        "render": render_llama3,
    },
}

# The chat of every expected.json. The user turn has surrounding whitespace: Llama 3 trims it, ChatML keeps it.
CHAT_MESSAGES = [
    {"role": "system", "content": "You add numbers."},
    {"role": "user", "content": " What is 12+34?\n"},
    {"role": "assistant", "content": "12+34=46"},
]
TOKENS_TEXT = "Add 12+34=46, then  7 + 8 = 15.\nDone!"

# ---------------------------------------------------------------------------------------------
# The fixtures
# ---------------------------------------------------------------------------------------------

COMMON = {"hidden_size": 32, "num_hidden_layers": 2, "intermediate_size": 64, "vocab_size": MODEL_VOCAB}
NO_DROPOUT = {"attention_dropout": 0.0}

# name -> class, config arguments, chat family, tokenizer layout ("v5": chat_template.jinja, "v4": the
# template inside tokenizer_config.json), dtype of the saved weights.
FIXTURES = {
    "llama": {
        "cls": LlamaForCausalLM,
        "config": LlamaConfig,
        "args": {
            **COMMON,
            **NO_DROPOUT,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 512,
            "rms_norm_eps": 1e-5,
            "tie_word_embeddings": True,
            # head_dim 8, theta 500: wavelengths 6.3 (< 64/4: kept), 29.7 (between: smoothed), 140 and 664
            # (> 64: divided by 8). Llama 3's own theta 500000 would divide every frequency but the first.
            "rope_parameters": {
                "rope_type": "llama3",
                "rope_theta": 500.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        },
        "family": "llama3",
        "tokenizer_layout": "v5",
        "dtype": torch.float32,
    },
    "qwen2": {
        "cls": Qwen2ForCausalLM,
        "config": Qwen2Config,
        "args": {
            **COMMON,
            **NO_DROPOUT,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": False,
            "use_sliding_window": False,
            "max_window_layers": 28,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
        },
        "family": "chatml",
        "tokenizer_layout": "v4",
        "dtype": torch.float32,
        # Qwen2.5 checkpoints carry a sliding_window that use_sliding_window: false switches off.
        "v4_extra": {"sliding_window": 32768},
    },
    "qwen3": {
        "cls": Qwen3ForCausalLM,
        "config": Qwen3Config,
        "args": {
            **COMMON,
            **NO_DROPOUT,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 40960,
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": True,
            "use_sliding_window": False,
            "max_window_layers": 28,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
        },
        "family": "chatml",
        "tokenizer_layout": "v5",
        "dtype": torch.float32,
        "v4_extra": {"sliding_window": None},
    },
    "qwen3-yarn": {
        "cls": Qwen3ForCausalLM,
        "config": Qwen3Config,
        "args": {
            **COMMON,
            **NO_DROPOUT,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 256,
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": True,
            "use_sliding_window": False,
            "max_window_layers": 28,
            # With head_dim 16 and theta 1e6 the correction range is [0, 2]: pair 0 keeps its frequency,
            # pair 1 is half interpolated, pairs 2-7 are divided by 4. (An original length of 8 would give
            # [0, 1]: no pair blended.) The attention factor 0.1 ln 4 + 1 scales cos and sin.
            "rope_parameters": {
                "rope_type": "yarn",
                "rope_theta": 1000000.0,
                "factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        },
        "family": "chatml",
        "tokenizer_layout": "v5",
        "dtype": torch.float32,
        "v4_extra": {"sliding_window": None},
    },
    "smollm2": {
        "cls": LlamaForCausalLM,
        "config": LlamaConfig,
        "args": {
            **COMMON,
            **NO_DROPOUT,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-5,
            "tie_word_embeddings": True,
            "rope_parameters": {"rope_type": "default", "rope_theta": 100000.0},
        },
        "family": "chatml",
        "tokenizer_layout": "v5",
        "dtype": torch.bfloat16,
    },
    "llama-linear": {
        "cls": LlamaForCausalLM,
        "config": LlamaConfig,
        "args": {
            **COMMON,
            **NO_DROPOUT,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-5,
            "tie_word_embeddings": False,
            "attention_bias": True,
            "mlp_bias": True,
            "rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
        },
        "family": "llama3",
        "tokenizer_layout": "v4",
        "dtype": torch.float16,
    },
    "mistral": {
        "cls": MistralForCausalLM,
        "config": MistralConfig,
        "args": {
            **COMMON,
            **NO_DROPOUT,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 12,
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-5,
            "tie_word_embeddings": False,
            # Each query sees itself and the 5 tokens before it; the batch's rows are 16 long.
            "sliding_window": 6,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
        },
        "family": "chatml",
        "tokenizer_layout": "v5",
        "dtype": torch.float32,
    },
    "gpt2": {
        "cls": GPT2LMHeadModel,
        "config": GPT2Config,
        "args": {
            "n_embd": 32,
            "n_layer": 2,
            "n_head": 4,
            "n_inner": 64,
            "n_positions": 64,
            "vocab_size": MODEL_VOCAB,
            "activation_function": "gelu_new",
            "layer_norm_epsilon": 1e-5,
            "tie_word_embeddings": True,
            "attn_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "resid_pdrop": 0.0,
            "summary_first_dropout": 0.0,
        },
        "family": "chatml",
        "tokenizer_layout": "v5",
        "dtype": torch.float32,
    },
}

BATCH_LENGTHS = [16, 11, 7]
SEQ_LEN = 16
# The loss covers real tokens from this many places after a row's first real token.
LOSS_OFFSET = 3
MATRIX_STD = 0.2
# Embeddings (and the untied heads) are wider so the next-token distributions are far from uniform.
EMBEDDING_STD = 0.5
NORM_NOISE = 0.1
BIAS_STD = 0.1


def seed_of(name, what):
    """A seed per fixture and purpose that does not depend on the order the fixtures are made in."""
    return zlib.crc32(f"{name}/{what}".encode())


# ---------------------------------------------------------------------------------------------
# Building a fixture
# ---------------------------------------------------------------------------------------------


def token_id(tok, token):
    return None if token is None else tok.convert_tokens_to_ids(token)


def build_tokenizer(base, family):
    f = FAMILIES[family]
    kwargs = {"eos_token": f["eos"], "chat_template": f["template"]}
    if f["bos"]:
        kwargs["bos_token"] = f["bos"]
    if f["pad"]:
        kwargs["pad_token"] = f["pad"]
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(base.to_str()), **kwargs)


# Keys transformers 5.23 writes into tokenizer_config.json after loading from a local directory: where it
# was loaded from, not what the tokenizer is.
LOAD_ARTEFACTS = ("is_local", "local_files_only")


def save_tokenizer(tok, out, layout):
    """Saves the tokenizer into a directory that already holds config.json.

    transformers 5 picks the tokenizer class from the model type, and for some (qwen2) that class
    rebuilds the pre-tokenizer itself whatever tokenizer.json says (Qwen's split regex and NFC). The
    tokenizer is therefore saved, loaded back with AutoTokenizer and, when the class changed, saved again
    from what was loaded: tokenizer.json then holds the pipeline transformers really runs.

    v5: what transformers 5.23 writes (chat_template.jinja beside tokenizer_config.json). v4: the template
    as the chat_template field of tokenizer_config.json, with added_tokens_decoder and the tokenizer_class
    a transformers-4 checkpoint names (the model's own class where transformers has one, otherwise
    PreTrainedTokenizerFast)."""
    tok.save_pretrained(out)
    loaded = AutoTokenizer.from_pretrained(out)
    own_class = type(loaded).__name__ != "TokenizersBackend"
    if own_class or layout == "v4":
        (out / "chat_template.jinja").unlink()
        loaded.save_pretrained(out, save_jinja_files=layout == "v5")
    path = out / "tokenizer_config.json"
    cfg = json.loads(path.read_text())
    for key in LOAD_ARTEFACTS:
        cfg.pop(key, None)
    if layout == "v4":
        assert "chat_template" in cfg and not (out / "chat_template.jinja").exists()
        cfg.pop("backend", None)
        cfg["tokenizer_class"] = type(loaded).__name__ if own_class else "PreTrainedTokenizerFast"
        cfg["clean_up_tokenization_spaces"] = False
        cfg["added_tokens_decoder"] = {
            str(i): {
                "content": t.content,
                "lstrip": t.lstrip,
                "normalized": t.normalized,
                "rstrip": t.rstrip,
                "single_word": t.single_word,
                "special": t.special,
            }
            for i, t in sorted(loaded.added_tokens_decoder.items())
        }
        for key in ("bos_token", "eos_token", "pad_token"):
            cfg.setdefault(key, None)
        if "add_prefix_space" in cfg and cfg["add_prefix_space"] is None:
            cfg["add_prefix_space"] = False
    else:
        assert "chat_template" not in cfg and (out / "chat_template.jinja").exists()
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def check_tokenizer_json(out, loaded, texts):
    """tokenizer.json read by the tokenizers library alone gives transformers' ids for every text."""
    raw = Tokenizer.from_file(str(out / "tokenizer.json"))
    for text, ids in texts:
        assert raw.encode(text, add_special_tokens=False).ids == ids, (text, ids)
        assert loaded(text, add_special_tokens=False)["input_ids"] == ids, (text, ids)


def chat_ids(tok, messages, add_generation_prompt):
    out = tok.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=True)
    ids = out["input_ids"] if hasattr(out, "keys") else out
    return [int(i) for i in ids]


def chat_section(tok, family):
    prompt = tok.apply_chat_template(CHAT_MESSAGES[:2], add_generation_prompt=True, tokenize=False)
    conversation = tok.apply_chat_template(CHAT_MESSAGES, tokenize=False)
    render = FAMILIES[family]["render"]
    assert prompt == render(CHAT_MESSAGES[:2], True), repr(prompt)
    assert conversation == render(CHAT_MESSAGES, False), repr(conversation)
    return {
        "messages": CHAT_MESSAGES,
        "prompt": prompt,
        "prompt_ids": chat_ids(tok, CHAT_MESSAGES[:2], True),
        "conversation": conversation,
        "conversation_ids": chat_ids(tok, CHAT_MESSAGES, False),
    }


def v4_config(v5, spec):
    """config.json in transformers-4 form: rope_theta at the top, rope_scaling {type, rope_type, ...} or
    null, torch_dtype, and the family's 4.x-era fields (no layer_types for Qwen)."""
    cfg = {k: v for k, v in v5.items() if k not in ("rope_parameters", "dtype")}
    rope = v5.get("rope_parameters")
    if rope is not None:
        rest = {k: v for k, v in rope.items() if k not in ("rope_theta", "rope_type")}
        cfg["rope_theta"] = rope["rope_theta"]
        kind = rope["rope_type"]
        cfg["rope_scaling"] = None if kind == "default" else {"type": kind, "rope_type": kind, **rest}
    cfg["torch_dtype"] = v5["dtype"]
    cfg["transformers_version"] = V4_TRANSFORMERS_VERSION
    if v5["model_type"] in ("qwen2", "qwen3"):
        cfg.pop("layer_types", None)
    cfg.update(spec.get("v4_extra", {}))
    return cfg


def rope_of(config):
    """rope_parameters as transformers holds them, without the legacy "type" alias a v4 file leaves."""
    rope = getattr(config, "rope_parameters", None)
    return None if rope is None else {k: v for k, v in rope.items() if k != "type"}


def check_v4_config(out, v5_config):
    """transformers 5.23 must read config.v4.json to the same model as config.json."""
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(out / "config.v4.json", Path(tmp) / "config.json")
        old = AutoConfig.from_pretrained(tmp)
    new = AutoConfig.from_pretrained(out)
    assert rope_of(old) == rope_of(new), (rope_of(old), rope_of(new))
    assert rope_of(new) == rope_of(v5_config)
    for key in ("sliding_window", "layer_types", "head_dim", "tie_word_embeddings", "num_key_value_heads"):
        assert getattr(old, key, None) == getattr(new, key, None), (key, getattr(old, key, None), getattr(new, key))


def init_weights(model, name):
    """Seeded normal weights: matrices std 0.2 (embeddings 0.5), norm scales 1 +- 0.1, biases std 0.1."""
    gen = torch.Generator().manual_seed(seed_of(name, "weights"))
    with torch.no_grad():
        for pname, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            leaf = pname.rsplit(".", 1)[-1]
            if p.dim() == 1 and leaf == "weight":
                value = 1.0 + NORM_NOISE * noise
            elif leaf == "bias":
                value = BIAS_STD * noise
            elif "embed" in pname or pname.startswith("lm_head") or ".wte." in pname or ".wpe." in pname:
                value = EMBEDDING_STD * noise
            else:
                value = MATRIX_STD * noise
            p.copy_(value.to(p.dtype))


def make_batch(name, pad_id):
    gen = torch.Generator().manual_seed(seed_of(name, "batch"))
    ids = torch.randint(0, TOKENIZER_VOCAB, (len(BATCH_LENGTHS), SEQ_LEN), generator=gen)
    mask = torch.zeros_like(ids)
    loss_mask = torch.zeros_like(ids)
    for row, length in enumerate(BATCH_LENGTHS):
        first = SEQ_LEN - length
        ids[row, :first] = pad_id
        mask[row, first:] = 1
        loss_mask[row, first + LOSS_OFFSET :] = 1
    return ids, mask, loss_mask


def positions(mask):
    """durable-rl's rule: a token's position counts the real tokens before it (left padding skipped)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def token_logprobs(model, ids, mask):
    """[B][T] log p(ids[t] | ids[<t]) where tokens t and t-1 are both real, 0 elsewhere; and the logits."""
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask), use_cache=False).logits
    logp = torch.log_softmax(logits[:, :-1].to(torch.float64), dim=-1)
    picked = logp.gather(-1, ids[:, 1:, None])[..., 0]
    valid = (mask[:, 1:] * mask[:, :-1]).bool()
    zero = torch.zeros_like(picked[:, :1])
    return torch.cat([zero, torch.where(valid, picked, 0.0)], dim=1), logits


def eager_float64_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' eager attention with the softmax in the model's dtype. The stock Llama/Qwen/Mistral
    eager attention takes its softmax in float32: in a float64 model the padding mask (float64 min) turns
    into -inf there, the rows of left-padding queries become NaN, and the NaN reaches the real tokens
    through the next layer (0 weight x NaN value). GPT-2's eager attention is already this function."""
    groups = query.shape[1] // key.shape[1]
    key = key.repeat_interleave(groups, dim=1)
    value = value.repeat_interleave(groups, dim=1)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = torch.softmax(weights, dim=-1)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


AttentionInterface.register("eager_float64", eager_float64_attention)
AttentionMaskInterface.register("eager_float64", eager_mask)
# What stock float32 transformers (eager) may differ by from the float64 reference, per logprob.
FLOAT32_AGREEMENT = 1e-5


def reference(out, spec, ids, mask, loss_mask):
    """Loads the saved directory in float64 and computes logprobs, loss and gradients. transformers still
    computes the RoPE angles in float32; everything else runs in float64."""
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float64, attn_implementation="eager_float64")
    assert type(model) is spec["cls"], type(model)
    model.eval()
    logprobs, logits = token_logprobs(model, ids, mask)
    assert torch.isfinite(logits).all()
    # Stock transformers in float32 with its own eager attention computes the same logprobs.
    stock = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        stock_logprobs, _ = token_logprobs(stock, ids, mask)
    drift = (stock_logprobs - logprobs).abs().max().item()
    assert drift < FLOAT32_AGREEMENT, f"float32 eager differs from the float64 reference by {drift:.2e}"
    loss = -(logprobs * loss_mask).sum() / loss_mask.sum()
    # The model's own loss (labels -100 outside the loss mask) must be the same number. transformers
    # upcasts logits to float32 inside it, so it agrees to float32 precision only, and the gradients are
    # taken of the float64 mean instead.
    labels = ids.masked_fill(loss_mask == 0, -100)
    with torch.no_grad():
        hf_loss = model(
            input_ids=ids, attention_mask=mask, position_ids=positions(mask), labels=labels, use_cache=False
        ).loss
    assert abs(hf_loss.item() - loss.item()) < 1e-5 * max(1.0, abs(loss.item())), (hf_loss.item(), loss.item())
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    grad_norms = {n: g.norm().item() for n, g in grads.items()}
    grad_norm = math.sqrt(sum(g.pow(2).sum().item() for g in grads.values()))
    return model, logprobs, logits, loss.item(), grad_norm, grad_norms, drift


def check_coverage(name, spec, model, ids, mask, logits):
    """The properties each fixture exists to cover, asserted on the model transformers built."""
    cfg = model.config
    real = mask.bool()
    probs = torch.softmax(logits[real], dim=-1)
    entropy = -(probs * probs.clamp_min(1e-300).log()).sum(-1).mean().item()
    assert entropy < 0.8 * math.log(MODEL_VOCAB), f"{name}: next-token entropy {entropy:.2f} is near uniform"
    rope = getattr(cfg, "rope_parameters", None) or {}
    if rope.get("rope_type") in ("llama3", "yarn"):
        # Each frequency of transformers' own rotary module against the unscaled one: llama3 and YaRN
        # keep some, divide some by the factor and blend the ones between; the fixture must hold all three.
        dim = cfg.head_dim
        plain = 1.0 / rope["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        ratio = plain / model.model.rotary_emb.inv_freq.to(torch.float64)
        factor = rope["factor"]
        kept = (ratio - 1).abs() < 1e-4
        divided = (ratio - factor).abs() < 1e-4 * factor
        assert kept.any() and divided.any() and (~kept & ~divided).any(), f"{name}: frequency ratios {ratio}"
    if getattr(cfg, "sliding_window", None) is not None:
        assert cfg.sliding_window < SEQ_LEN
        with torch.no_grad():
            windowed, _ = token_logprobs(model, ids, mask)
            window = cfg.sliding_window
            cfg.sliding_window = None
            full, _ = token_logprobs(model, ids, mask)
            cfg.sliding_window = window
        assert (windowed - full).abs().max().item() > 1e-3, f"{name}: the sliding window changes nothing"
    return entropy


def write_fixture(root, name, spec, base_tok):
    out = root / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    family = FAMILIES[spec["family"]]
    tok = build_tokenizer(base_tok, spec["family"])
    bos, eos, pad = (token_id(tok, family[k]) for k in ("bos", "eos", "pad"))
    generation_eos = [token_id(tok, t) for t in family["generation_eos"]]

    args = dict(spec["args"])
    ids_args = {"bos_token_id": bos, "eos_token_id": eos if spec["family"] == "chatml" else generation_eos}
    ids_args["pad_token_id"] = pad
    if spec["config"] is GPT2Config:
        ids_args["bos_token_id"] = token_id(tok, "<|endoftext|>")
    config = spec["config"](**args, **ids_args)

    torch.manual_seed(seed_of(name, "module"))
    model = spec["cls"](config)
    init_weights(model, name)
    model = model.to(spec["dtype"])
    model.save_pretrained(out)
    GenerationConfig(bos_token_id=bos, eos_token_id=generation_eos, pad_token_id=pad).save_pretrained(out)
    save_tokenizer(tok, out, spec["tokenizer_layout"])

    v5 = json.loads((out / "config.json").read_text())
    (out / "config.v4.json").write_text(json.dumps(v4_config(v5, spec), indent=2, sort_keys=True) + "\n")
    check_v4_config(out, config)

    # The saved file holds the weights the reference runs on, in the fixture's dtype.
    with safe_open(out / "model.safetensors", "pt") as f:
        saved = {k: f.get_tensor(k) for k in f.keys()}
    want_dtype = spec["dtype"]
    assert all(t.dtype == want_dtype for t in saved.values()), {k: t.dtype for k, t in saved.items()}

    pad_id = pad if pad is not None else 0
    ids, mask, loss_mask = make_batch(name, pad_id)
    ref, logprobs, logits, loss, grad_norm, grad_norms, drift = reference(out, spec, ids, mask, loss_mask)
    params = dict(ref.named_parameters())
    assert set(grad_norms) == set(saved), (sorted(set(grad_norms) ^ set(saved)))
    for k, t in saved.items():
        assert torch.equal(params[k].detach(), t.to(torch.float64)), k
    entropy = check_coverage(name, spec, ref, ids, mask, logits.detach())

    loaded_tok = AutoTokenizer.from_pretrained(out)
    assert loaded_tok.chat_template == family["template"]
    chat = chat_section(loaded_tok, spec["family"])
    tokens_ids = loaded_tok(TOKENS_TEXT, add_special_tokens=False)["input_ids"]
    texts = [(chat["prompt"], chat["prompt_ids"]), (chat["conversation"], chat["conversation_ids"])]
    check_tokenizer_json(out, loaded_tok, texts + [(TOKENS_TEXT, tokens_ids)])
    gen = GenerationConfig.from_pretrained(out)
    expected = {
        "versions": PINNED,
        "name": name,
        "hf_class": spec["cls"].__name__,
        "reference_dtype": "float64",
        "batch": {
            "input_ids": ids.tolist(),
            "attention_mask": mask.tolist(),
            "loss_mask": loss_mask.tolist(),
        },
        "logprobs": logprobs.detach().tolist(),
        "loss": loss,
        "grad_norm": grad_norm,
        "grad_norms": grad_norms,
        "chat": chat,
        "eos_token_ids": list(gen.eos_token_id) if isinstance(gen.eos_token_id, list) else [gen.eos_token_id],
        "tokens": {
            "text": TOKENS_TEXT,
            "ids": tokens_ids,
        },
    }
    (out / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    size = sum(p.stat().st_size for p in out.iterdir())
    print(
        f"{name:13s} {spec['cls'].__name__:18s} loss {loss:.6f}  grad_norm {grad_norm:.6f}  "
        f"entropy {entropy:.2f}  float32 drift {drift:.1e}  {size / 1024:.0f} KiB"
    )


# ---------------------------------------------------------------------------------------------
# LoRA (PEFT)
# ---------------------------------------------------------------------------------------------

LORA_FIXTURES = ["llama", "qwen2", "qwen3", "mistral"]
LORA_RANK = 4
LORA_ALPHA = 8
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_STD = 0.1


def write_lora(root, name):
    """PEFT's LoRA on the saved fixture `name`: the adapter directory and what it computes."""
    from peft import LoraConfig, get_peft_model

    base_dir = root / name
    out = base_dir / "lora"
    if out.exists():
        shutil.rmtree(out)
    spec = FIXTURES[name]
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float64, attn_implementation="eager_float64")
    assert type(base) is spec["cls"], type(base)
    lora = LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, target_modules=LORA_TARGETS, lora_dropout=0.0, bias="none")
    model = get_peft_model(base, lora)
    gen = torch.Generator().manual_seed(seed_of(name, "lora"))
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "lora_" in pname:
                # float32-representable values, so the saved float32 adapter is exactly what was computed with
                p.copy_((LORA_STD * torch.randn(p.shape, generator=gen, dtype=torch.float64)).to(torch.float32).to(torch.float64))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable), sorted(trainable)[:4]
    model.save_pretrained(out, safe_serialization=True)
    # PEFT saves the adapter in the model's dtype (float64 here): keep float32, as a trained adapter is
    with safe_open(out / "adapter_model.safetensors", "pt") as f:
        saved = {k: f.get_tensor(k).to(torch.float32) for k in f.keys()}
    from safetensors.torch import save_file

    save_file(saved, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    (out / "README.md").unlink(missing_ok=True)
    # PEFT writes target_modules from a set (its order follows the string hash seed): sorted, the file is the same every run
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    adapter_config["target_modules"] = sorted(adapter_config["target_modules"])
    (out / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2, sort_keys=True) + "\n")

    pad = json.loads((base_dir / "config.json").read_text()).get("pad_token_id")
    ids, mask, loss_mask = make_batch(name, pad if pad is not None else 0)
    model.eval()
    logprobs, _ = token_logprobs(model, ids, mask)
    loss = -(logprobs * loss_mask).sum() / loss_mask.sum()
    loss.backward()
    # PEFT's saved names drop the adapter name ("default"): those are the names an exporter writes
    grads = {n.replace(".default", ""): p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert set(grads) == set(saved), sorted(set(grads) ^ set(saved))[:4]
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    with model.disable_adapter(), torch.no_grad():
        off, _ = token_logprobs(model, ids, mask)
    base_expected = torch.tensor(json.loads((base_dir / "expected.json").read_text())["logprobs"], dtype=torch.float64)
    assert (off - base_expected).abs().max().item() < 1e-9, "the adapter switched off is the base model"
    assert (logprobs - off).abs().max().item() > 1e-2, f"{name}: the adapter changes nothing"
    expected = {
        "versions": PINNED,
        "name": name,
        "lora": {"r": LORA_RANK, "lora_alpha": LORA_ALPHA, "target_modules": LORA_TARGETS, "lora_dropout": 0.0},
        "reference_dtype": "float64",
        "logprobs": logprobs.detach().tolist(),
        "loss": loss.item(),
        "grad_norm": math.sqrt(sum(g.pow(2).sum().item() for g in grads.values())),
        "grad_norms": {n: g.norm().item() for n, g in grads.items()},
    }
    (out / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    print(f"{name:13s} lora r={LORA_RANK} alpha={LORA_ALPHA}: loss {loss.item():.6f}  {len(grads)} adapter tensors")


def check_versions():
    found = {
        "torch": torch.__version__.split("+")[0],
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": numpy.__version__,
    }
    try:
        import importlib.metadata as md

        found["peft"] = md.version("peft")
    except Exception:
        found["peft"] = None
    wrong = {k: v for k, v in found.items() if v != PINNED[k]}
    if wrong:
        sys.exit(f"unpinned versions {wrong}; the fixtures need {PINNED}")


def make_all(root, only):
    check_versions()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    base = train_tokenizer()
    root.mkdir(parents=True, exist_ok=True)
    for name, spec in FIXTURES.items():
        if not only or name in only:
            write_fixture(root, name, spec, base)
            if name in LORA_FIXTURES:
                write_lora(root, name)


def make_lora(root, only):
    check_versions()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for name in LORA_FIXTURES:
        if not only or name in only:
            write_lora(root, name)


# ---------------------------------------------------------------------------------------------
# check-export
# ---------------------------------------------------------------------------------------------


def check_export(directory, expect, tol):
    """Loads DIR the way a user's transformers would; returns the process exit code."""
    torch.set_num_threads(1)
    failures = []
    try:
        model = AutoModelForCausalLM.from_pretrained(
            directory, dtype=torch.float32, attn_implementation="eager", local_files_only=True
        ).eval()
        tok = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        gen = GenerationConfig.from_pretrained(directory, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - any load failure is the answer
        print(f"FAIL: transformers cannot load {directory}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"model {type(model).__name__}, {sum(p.numel() for p in model.parameters())} parameters")
    print(f"tokenizer {type(tok).__name__}, {len(tok)} tokens")
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    print(f"generation config eos {eos}")
    if not eos or any(e is None or not 0 <= e < model.config.vocab_size for e in eos):
        failures.append(f"eos ids {eos} outside the vocabulary ({model.config.vocab_size})")
    if tok.chat_template:
        prompt = tok.apply_chat_template(CHAT_MESSAGES[:2], add_generation_prompt=True, tokenize=False)
        prompt_ids = chat_ids(tok, CHAT_MESSAGES[:2], True)
        print(f"chat prompt {prompt!r}")
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt_ids]), use_cache=False).logits
        if not torch.isfinite(logits).all():
            failures.append("the chat prompt's logits are not finite")
        else:
            print(f"next token after the prompt: {int(logits[0, -1].argmax())} ({len(prompt_ids)} prompt tokens)")
        # transformers may replace tokenizer.json's pipeline with its own class's (qwen2 does): then a
        # loader that reads tokenizer.json tokenises differently from transformers.
        raw = Tokenizer.from_file(str(Path(directory) / "tokenizer.json"))
        for text, ids in [(prompt, prompt_ids), (TOKENS_TEXT, tok(TOKENS_TEXT, add_special_tokens=False)["input_ids"])]:
            if raw.encode(text, add_special_tokens=False).ids != ids:
                failures.append(f"tokenizer.json and {type(tok).__name__} tokenise {text!r} differently")
    else:
        # a base model (e.g. durable-rl's char-tokenizer models trained from scratch): a plain prompt
        text = "123+045="
        ids = tok(text)["input_ids"]
        print(f"no chat template; plain prompt {text!r} -> {ids}")
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits
        if not torch.isfinite(logits).all():
            failures.append("the plain prompt's logits are not finite")
        else:
            print(f"next token after the prompt: {int(logits[0, -1].argmax())} ({tok.decode([int(logits[0, -1].argmax())])!r})")
    if expect:
        want = json.loads(Path(expect).read_text())
        ids = torch.tensor(want["input_ids"])
        mask = torch.tensor(want["attention_mask"])
        with torch.no_grad():
            got, _ = token_logprobs(model, ids, mask)
        diff = (got - torch.tensor(want["logprobs"], dtype=torch.float64)).abs().max().item()
        print(f"max |logprob difference| {diff:.3e} (tolerance {tol:g})")
        if not diff <= tol:
            failures.append(f"logprobs differ by {diff:.3e} > {tol:g}")
    for f in failures:
        print(f"FAIL: {f}", file=sys.stderr)
    print("ok" if not failures else "failed")
    return 1 if failures else 0


def main(argv):
    if argv[:1] == ["check-export"]:
        p = argparse.ArgumentParser(prog="make_fixtures.py check-export")
        p.add_argument("dir", help="a Hugging Face model directory (e.g. from durable-rl export)")
        p.add_argument("--expect", help="JSON {input_ids, attention_mask, logprobs} to compare against")
        p.add_argument("--tol", type=float, default=1e-4, help="largest allowed |logprob difference|")
        a = p.parse_args(argv[1:])
        return check_export(a.dir, a.expect, a.tol)
    if argv[:1] == ["lora"]:
        p = argparse.ArgumentParser(prog="make_fixtures.py lora")
        p.add_argument("out", help="the fixture root holding the base fixtures (test/fixtures/hf)")
        p.add_argument("--only", nargs="*", choices=LORA_FIXTURES)
        a = p.parse_args(argv[1:])
        make_lora(Path(a.out), a.only)
        return 0
    p = argparse.ArgumentParser(prog="make_fixtures.py", description=__doc__.split("\n")[0])
    p.add_argument("out", help="where the fixture directories go (test/fixtures/hf)")
    p.add_argument("--only", nargs="*", help="make only these fixtures (default: all)", choices=list(FIXTURES))
    a = p.parse_args(argv)
    make_all(Path(a.out), a.only)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
