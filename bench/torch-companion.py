#!/usr/bin/env python3
"""PyTorch companion of the durable-rl benchmarks: the same shapes in PyTorch eager, one
measurement per process (so each peak RSS is that measurement's alone).

Pinned versions (measured with exactly these; others may differ):
    python 3.11, torch==2.15.0, transformers==5.23.0, peft==0.21.2

Never run by tests or CI. The TypeScript benchmarks spawn it (`--with-torch PATH_TO_PYTHON`),
so a ratio durable-rl / PyTorch comes from one machine at one time; it also runs by hand:

    python bench/torch-companion.py --part peak --threads 2
    python bench/torch-companion.py --part decode --config bench/real-sizes.json#smollm2-135m \
        --batch 32 --prompt 256 --new 256 --threads 2
    python bench/torch-companion.py --part train --config bench/real-sizes.json#qwen2.5-0.5b \
        --batch 8 --seq 512 --lora-rank 16 --threads 2

Parts (each prints one line `RESULT {json}` with `peakRssMiB`, the process's ru_maxrss):
- peak: best GFLOP/s of a square fp32 matmul (512, 1024, 2048), and of bf16 when `--dtype bf16`;
- decode: HF `generate` at `--batch` x `--prompt` random prompt tokens (no padding), greedy
  (`do_sample=False`), exactly `--new` new tokens (no stop token); `loadS` is the model's
  construction with random weights, `totalS` the best of `--reps` generate calls;
- train: one fp32 training step per repetition on `--batch` x `--seq` random tokens: the loss
  durable-rl's `sftLoss` computes (mean over tokens 1..T-1 of -log p(token | prefix)), backward,
  global-norm clipping at 1.0, torch.optim.AdamW (lr 1e-4, betas 0.9/0.999, eps 1e-8, no weight
  decay: durable-rl's defaults). With `--lora-rank r`, a PEFT LoRA (alpha 2r, dropout 0, all seven
  linear modules of a llama block) and AdamW over the adapters only. `warmS` is the first step,
  `stepS` the best of the following `--steps` steps.
`--dtype bf16` runs the forward under torch.autocast('cpu', bfloat16) (weights and optimizer
stay fp32); the benchmark asks for it only where the CPU has AMX.
"""
import argparse
import json
import resource
import sys
import time


def load_config(spec):
    """`path.json#key` (a file of several configs) or `path.json` (one HF config.json)."""
    path, _, key = spec.partition("#")
    with open(path) as f:
        data = json.load(f)
    return data[key] if key else data


def build_model(cfg_dict, torch):
    from transformers import AutoConfig, AutoModelForCausalLM

    d = dict(cfg_dict)
    model_type = d.pop("model_type")
    d.pop("architectures", None)
    cfg = AutoConfig.for_model(model_type, **d)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)


def autocast(torch, dtype):
    if dtype == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    import contextlib

    return contextlib.nullcontext()


def part_peak(args, torch):
    out = {}
    best = 0.0
    for dt in ["fp32"] + (["bf16"] if args.dtype == "bf16" else []):
        for n in [512, 1024, 2048]:
            tdt = torch.float32 if dt == "fp32" else torch.bfloat16
            a = torch.randn(n, n, dtype=tdt)
            b = torch.randn(n, n, dtype=tdt)
            torch.mm(a, b)
            fastest = float("inf")
            for _ in range(4 if n >= 2048 else 10):
                t0 = time.perf_counter()
                torch.mm(a, b)
                fastest = min(fastest, time.perf_counter() - t0)
            g = 2 * n**3 / fastest / 1e9
            out[f"{dt}_n{n}"] = g
            best = max(best, g)
    out["gflops"] = best
    return out


def part_decode(args, torch):
    t0 = time.perf_counter()
    model = build_model(load_config(args.config), torch).eval()
    load_s = time.perf_counter() - t0
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, vocab, (args.batch, args.prompt), generator=g)
    mask = torch.ones_like(ids)
    kw = dict(
        attention_mask=mask,
        do_sample=False,
        max_new_tokens=args.new,
        min_new_tokens=args.new,
        eos_token_id=None,
        pad_token_id=0,
    )
    best = float("inf")
    with torch.inference_mode(), autocast(torch, args.dtype):
        model.generate(ids[:1, :8], attention_mask=mask[:1, :8], do_sample=False, max_new_tokens=2, pad_token_id=0)
        for _ in range(args.reps):
            t1 = time.perf_counter()
            out = model.generate(ids, **kw)
            best = min(best, time.perf_counter() - t1)
            assert out.shape == (args.batch, args.prompt + args.new), out.shape
    return {"loadS": load_s, "totalS": best, "newTokensPerS": args.batch * args.new / best}


def part_train(args, torch):
    t0 = time.perf_counter()
    model = build_model(load_config(args.config), torch).train()
    if args.lora_rank:
        from peft import LoraConfig, get_peft_model

        lc = LoraConfig(
            r=args.lora_rank,
            lora_alpha=2 * args.lora_rank,
            lora_dropout=0.0,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        )
        model = get_peft_model(model, lc)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    load_s = time.perf_counter() - t0
    vocab = load_config(args.config)["vocab_size"]
    g = torch.Generator().manual_seed(2)

    def step():
        ids = torch.randint(0, vocab, (args.batch, args.seq), generator=g)
        with autocast(torch, args.dtype):
            logits = model(input_ids=ids).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        tok = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
        loss = -tok.mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach().item()

    t1 = time.perf_counter()
    loss = step()
    warm_s = time.perf_counter() - t1
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t)
    step_s = min(times) if times else warm_s
    return {
        "loadS": load_s,
        "warmS": warm_s,
        "stepS": step_s,
        "stepsS": times,
        "tokensPerS": args.batch * args.seq / step_s,
        "loss": loss,
        "trainable": sum(p.numel() for p in params),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", required=True, choices=["peak", "decode", "train"])
    ap.add_argument("--config", help="HF config: path.json or path.json#key")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16: autocast the forward")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512, help="train: tokens per row")
    ap.add_argument("--prompt", type=int, default=256, help="decode: prompt tokens per row")
    ap.add_argument("--new", type=int, default=256, help="decode: new tokens per row")
    ap.add_argument("--reps", type=int, default=1, help="decode: generate calls timed (best taken)")
    ap.add_argument("--steps", type=int, default=1, help="train: steps timed after the first (best taken)")
    ap.add_argument("--lora-rank", type=int, default=0, help="train: PEFT LoRA of this rank (0: full fine-tuning)")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    r = {"peak": part_peak, "decode": part_decode, "train": part_train}[args.part](args, torch)
    r["peakRssMiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    r["torch"] = torch.__version__
    sys.stdout.write("RESULT " + json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
