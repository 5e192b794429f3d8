#!/usr/bin/env python3
"""TRL companion of bench/grpo-step.ts: TRL's GRPOTrainer on the same model, prompts and settings as
a durable-rl rl run, timed per optimizer step.

Pinned versions (measured with exactly these; others may differ):
    python 3.11, torch==2.15.0, transformers==5.23.0, trl==1.16.0 (with datasets==5.2.0,
    accelerate==1.16.0)

Never run by tests or CI. bench/grpo-step.ts spawns it (`--with-trl PATH_TO_PYTHON`) after its own
run, so both sides are measured in one invocation; by hand:

    python bench/trl-companion.py --model DIR --data prompts.jsonl --steps 10 --prompts 32 --group 8 \
        --max-new 8 --temperature 0.7 --reversed --threads 2

- `--model DIR`: a Hugging Face model directory, here durable-rl's export of the run's checkpoint 0
  (config.json, model.safetensors, the char tokenizer): identical weights and tokenizer.
- `--data FILE`: JSONL rows {"prompt", "reference"}, step k's prompts at rows [k*P, (k+1)*P): read
  in order (`shuffle_dataset=False`), each repeated `--group` times, as durable-rl's step k.
- The reward is durable-rl's `addition` reward re-implemented: the last <answer>...</answer> span or
  else the whole completion, trimmed, must be 1-40 digits; read reversed with `--reversed`; 1 when
  it equals the reference sum, else 0.
- GRPOConfig: num_generations G, generation batch P*G in one `generate` call per step
  (per_device_train_batch_size = `--micro`, gradient_accumulation_steps = P*G / micro, so one
  optimizer step per P*G completions, like durable-rl's learner micro-batches), max_completion_length,
  temperature, top_p 1, top_k 0; beta 0 (no reference model), epsilon / epsilon_high, loss_type
  "bnpo" (token mean over the micro-batch: durable-rl's token_mean), scale_rewards "group",
  num_iterations 1; AdamW (betas, eps 1e-8, no weight decay), max_grad_norm, lr with cosine decay to
  `--min-lr-ratio` x lr; fp32 on the CPU (`use_cpu`), no vLLM, `--threads` torch threads.

Prints one line `RESULT {json}`: stepS (seconds of each optimizer step, on_step_begin to
on_step_end, the generation included), stages (mean seconds per step after the first inside the
trainer's `_generate`, `_calculate_rewards` and `_generate_and_score_completions`, the rest of a
step being the forward/backward passes and the optimizer), wallS (trainer.train()),
completionLengthMean and rewardMean (means over the steps' logs), versions.
"""
import argparse
import json
import os
import re
import sys
import tempfile
import time


def addition_reward(reversed_digits):
    answer_tag = re.compile(r"<answer>(.*?)</answer>", re.S)

    def reward(completions, reference, **_):
        out = []
        for text, ref in zip(completions, reference):
            spans = answer_tag.findall(text)
            answer = (spans[-1] if spans else text).strip()
            if not re.fullmatch(r"\d{1,40}", answer):
                out.append(0.0)
                continue
            digits = answer[::-1] if reversed_digits else answer
            out.append(1.0 if int(digits) == int(ref.strip()) else 0.0)
        return out

    reward.__name__ = "addition"
    return reward


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="HF model directory (durable-rl's export of checkpoint 0)")
    ap.add_argument("--data", required=True, help="JSONL of {prompt, reference}, steps' prompts in order")
    ap.add_argument("--steps", type=int, default=10, help="optimizer steps (rl steps)")
    ap.add_argument("--prompts", type=int, default=32, help="prompts per step")
    ap.add_argument("--group", type=int, default=8, help="samples per prompt (num_generations)")
    ap.add_argument("--max-new", type=int, default=8, help="completion budget in tokens")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1, help="cosine decay to this fraction of lr")
    ap.add_argument("--micro", type=int, default=64, help="completions per micro-batch (per_device_train_batch_size)")
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.99)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--clip-low", type=float, default=0.2, help="epsilon")
    ap.add_argument("--clip-high", type=float, default=0.28, help="epsilon_high")
    ap.add_argument("--reversed", action="store_true", help="answers are written least significant digit first")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import datasets
    import transformers
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    with open(args.data) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows = rows[: args.steps * args.prompts]
    dataset = datasets.Dataset.from_list(rows)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)

    batch = args.prompts * args.group
    micro = min(args.micro, batch)
    if batch % micro:
        raise SystemExit(f"prompts x group = {batch} must be a multiple of the micro-batch {micro}")

    # seconds spent in the trainer's own stages during the current step (see `timed` below)
    inside = {"generate": 0.0, "rewards": 0.0, "generateAndScore": 0.0}

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times = []
            self.stages = []
            self.t0 = None

        def on_step_begin(self, *_, **__):
            for k in inside:
                inside[k] = 0.0
            self.t0 = time.perf_counter()

        def on_step_end(self, *_, **__):
            self.times.append(time.perf_counter() - self.t0)
            self.stages.append(dict(inside))

    timer = StepTimer()
    out_dir = tempfile.mkdtemp(prefix="trl-grpo-")
    cfg = GRPOConfig(
        output_dir=out_dir,
        use_cpu=True,
        bf16=False,
        fp16=False,
        seed=args.seed,
        max_steps=args.steps,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=batch // micro,
        num_generations=args.group,
        max_completion_length=args.max_new,
        temperature=args.temperature,
        top_p=1.0,
        top_k=0,
        use_vllm=False,
        beta=0.0,
        num_iterations=1,
        epsilon=args.clip_low,
        epsilon_high=args.clip_high,
        loss_type="bnpo",
        scale_rewards="group",
        learning_rate=args.lr,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": args.min_lr_ratio},
        warmup_steps=0,
        adam_beta1=args.beta1,
        adam_beta2=args.beta2,
        adam_epsilon=1e-8,
        weight_decay=0.0,
        max_grad_norm=args.max_grad_norm,
        shuffle_dataset=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=0,
        log_completions=False,
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=addition_reward(args.reversed),
        args=cfg,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[timer],
    )

    def timed(name, fn):
        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                inside[name] += time.perf_counter() - t

        return wrapper

    # where a step's time goes: `generate` (sampling), the reward functions, and the whole
    # generate-and-score stage (those two plus tokenising, the logprobs it computes, advantages)
    trainer._generate = timed("generate", trainer._generate)
    trainer._calculate_rewards = timed("rewards", trainer._calculate_rewards)
    trainer._generate_and_score_completions = timed("generateAndScore", trainer._generate_and_score_completions)
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    logs = [h for h in trainer.state.log_history if "reward" in h]
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")
    result = {
        "stepS": timer.times,
        "stages": {k: mean([st[k] for st in timer.stages[1:]]) for k in inside},
        "wallS": wall,
        "completionLengthMean": mean([h["completions/mean_length"] for h in logs if "completions/mean_length" in h]),
        "rewardMean": mean([h["reward"] for h in logs]),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
            "datasets": datasets.__version__,
        },
        "promptIds0": trainer.processing_class(text=[rows[0]["prompt"]])["input_ids"][0],
    }
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
