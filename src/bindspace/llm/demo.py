"""`bindspace demo llm`: PandaGPT's emergent claim in a world we can check, in minutes on a CPU.

1. The encoder: `bindspace demo` (image and text towers trained together on handwritten
   digits, then an audio tower of keypad tones bound to the frozen image tower).
2. A small causal LM (a Llama config, random init, word-level vocabulary) learns the
   world's sentences: descriptions of digits, and questions about a described digit with
   their answers ("question : a handwritten 7 what digit is this ? answer : the digit seven").
3. A bridge (a linear projector to one soft token, plus LoRA on the LM, as PandaGPT) learns
   to answer "what digit is this?" about **images** only, through `bindspace train`'s llm
   recipe (cached embeddings, the shared Trainer).
4. Then the bridge is asked about **keypad tones** it never saw: audio embeddings go through
   the same projector, and the LM names the digit.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..modality import Modality
from ..train.demo import DemoSettings, run_demo
from ..train.digits_world import TEMPLATES, WORDS, DemoRun, generator, load_digits, render_digit
from .bridge import as_media
from .template import CHAT, PromptTemplate

QUESTION = "what digit is this?"
# With a pretrained LM (--lm): natural questions and answers, in the LM's own chat template.
NATURAL_QUESTION = "What digit is this?"
NATURAL_QUESTIONS = ("What digit is this?", "Which digit is shown here?", "What number is this?",
                     "Which digit do you see?")
NATURAL_ANSWER = "This is the digit {w}."
PLAIN_QUESTION = "What is the capital of France?"
QUESTIONS = ("what digit is this ?", "which digit is this ?", "what number is shown ?", "what is this digit ?")
TEMPLATE = PromptTemplate(text="question : {prompt} answer :")
ANSWER = "the digit {w}"
CHANCE = 0.1
ANSWER_TOKENS = 10  # "This is the digit seven." is 7 tokens with SmolLM2's tokenizer


@dataclass
class LlmDemoSettings(DemoRun):
    """Knobs of the LLM demo (defaults: >= 80 % on tones, a few CPU minutes)."""

    base: DemoSettings = field(default_factory=DemoSettings)
    lm_steps: int = 400
    bridge_steps: int = 500
    batch_size: int = 64
    lm_lr: float = 6e-3
    bridge_lr: float = 3e-3
    # Embedding noise while training the projector (see BridgeObjective), world LM. Tones sit far from the
    # images the bridge learns on (cosine ~0.56 to their digit's image centroid, images ~0.96): with 0.5
    # (cosine ~0.89) the tones' answers were decided where training never looked, and moved with the last
    # bits of the CPU's kernels (seed 0: 83.5 % of tones with AVX2 kernels, 91.5 % with ATen's unvectorised ones).
    # 1.0 (cosine ~0.71) trains the projector to read only the digit (docs/llm.md, measured per kernel set).
    noise: float = 1.0
    lora_rank: int = 8
    test_images: int = 100
    test_tones: int = 200
    # A pretrained causal LM (a .gguf file, a transformers directory, or a known name such as "smollm2")
    # instead of the small world LM: it stays frozen and only the projector trains.
    lm: str | None = None
    pretrained_steps: int = 120
    pretrained_batch_size: int = 16
    pretrained_lr: float = 2e-2
    pretrained_test_images: int = 200  # answers are batched (llm/answers.py): 200 of each cost well under a minute
    pretrained_test_tones: int = 200
    pretrained_noise: float = 0.5  # what the pretrained-LM figures in docs/llm.md were measured with


@dataclass
class LlmDemoResult:
    """Answer accuracies (chance 10 %), the encoder demo's, timing, and where things went."""

    audio_answers: float
    image_answers: float
    encoder_emergent: float
    seconds: float
    cpu_seconds: float
    samples: list[tuple[str, str]] = field(default_factory=list)  # (what was asked about, the answer)
    bridge_dir: Path | None = None
    saved_check: float | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    language_model: str = "small world LM (random init, trained here)"
    plain_answer: str | None = None  # the plain question (no media) and the LM's answer, with a pretrained LM
    asked: tuple[int, int] = (0, 0)  # how many images and tones were asked about

    def report(self) -> str:
        """Human-readable summary."""
        lines = [
            f"language model: {self.language_model}",
            f"bridge answers about held-out digit IMAGES (its training modality): {self.image_answers:6.1%}"
            f"   of {self.asked[0]}",
            f"bridge answers about keypad TONES (never seen by the bridge):      {self.audio_answers:6.1%}"
            f"   of {self.asked[1]} (chance {CHANCE:.0%})",
            f"encoder's own emergent audio -> text retrieval:                    {self.encoder_emergent:6.1%}",
            *(f"  {asked}: {answer!r}" for asked, answer in self.samples[:4]),
            *([f"plain question, no media: {PLAIN_QUESTION!r} -> {self.plain_answer!r}"]
              if self.plain_answer is not None else []),
            f"time: {self.seconds:.1f} s wall, {self.cpu_seconds:.1f} s CPU "
            f"({', '.join(f'{k} {v:.1f} s' for k, v in self.stage_seconds.items())})",
        ]
        if self.bridge_dir is not None:
            lines.append(f"bridge directory: {self.bridge_dir}")
            if self.saved_check is not None:
                lines.append(f"saved bridge, example WAVs through the standard audio loader: {self.saved_check:.0%} "
                             "correct")
        return "\n".join(lines)


def world_sentences() -> list[tuple[str, str]]:
    """The LM's training text as (context, continuation) pairs: descriptions, and question/answer turns.

    A description is all continuation; a turn's context is the question about a described digit
    and its continuation the answer, so turns teach answering (as instruction tuning does).
    """
    out = []
    for d, w in enumerate(WORDS):
        descriptions = [t.format(w=w, n=d) for t in TEMPLATES]
        out += [("", desc) for desc in descriptions]
        for desc in descriptions:
            for question in QUESTIONS:
                out.append((TEMPLATE.text.replace("{prompt}", f"{desc} {question}"), ANSWER.format(w=w)))
    return out


def answer_digit(text: str) -> int | None:
    """The digit an answer names (a word or a numeral), or None."""
    for token in re.findall(r"[a-z]+|\d", text.lower()):
        if token in WORDS:
            return WORDS.index(token)
        if token.isdigit():
            return int(token)
    return None


def train_world_lm(out: Path, s: LlmDemoSettings, log: Callable[[str], None]) -> Path:
    """Tokenizer + small Llama on the world's sentences (every sentence ends in EOS); saved to `out`."""
    from .wordlm import save_language_model, small_causal_lm, word_tokenizer

    sentences = world_sentences()
    tokenizer = word_tokenizer([*(c + " " + r for c, r in sentences), QUESTION])
    lm = small_causal_lm(tokenizer, seed=s.seed)
    model = lm.model

    def ids(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    pairs = [([tokenizer.bos_token_id, *ids(c)], [*ids(r), tokenizer.eos_token_id]) for c, r in sentences]
    length = max(len(c) + len(r) for c, r in pairs)
    table = torch.full((len(pairs), length), tokenizer.pad_token_id)
    targets = torch.full((len(pairs), length), -100)  # loss on continuations only
    for row, (context, continuation) in enumerate(pairs):
        table[row, :len(context) + len(continuation)] = torch.tensor(context + continuation)
        targets[row, len(context):len(context) + len(continuation)] = torch.tensor(continuation)
    optimizer = torch.optim.AdamW(model.parameters(), lr=s.lm_lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, s.lm_lr, total_steps=s.lm_steps, pct_start=0.1)
    gen = generator(s.seed, 20)
    model.train()
    loss = torch.tensor(0.0)
    for _ in range(s.lm_steps):
        pick = torch.randint(0, len(pairs), (s.batch_size,), generator=gen)
        # Right padding needs no attention mask in a causal LM: no real token attends to a later pad.
        logits = model(input_ids=table[pick]).logits[:, :-1]
        loss = F.cross_entropy(logits.flatten(0, 1), targets[pick][:, 1:].flatten(), ignore_index=-100)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    log(f"language model: {sum(p.numel() for p in model.parameters()):,} parameters, {len(tokenizer)} words, "
        f"{len(sentences)} sentences, final loss {float(loss.detach()):.3f}")
    return save_language_model(lm, out)


def write_image_rows(folder: Path, train_ids: torch.Tensor, seed: int, natural: bool = False) -> Path:
    """The projector's training data: digit images as PNG files and JSONL rows about them.

    `natural`: questions and answers in plain English ("This is the digit seven.") for a pretrained LM.
    """
    from PIL import Image

    images, labels = load_digits()
    (folder / "images").mkdir(parents=True, exist_ok=True)
    gen = generator(seed, 21)
    rows = []
    for i in train_ids.tolist():
        Image.fromarray(render_digit(images[i])).save(folder / "images" / f"{i}.png")
        questions, answer = (NATURAL_QUESTIONS, NATURAL_ANSWER) if natural else (QUESTIONS, ANSWER)
        question = questions[int(torch.randint(0, len(questions), (), generator=gen))]
        rows.append({"media": [{"modality": "image", "path": f"images/{i}.png"}], "prompt": question,
                     "response": answer.format(w=WORDS[int(labels[i])])})
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_llm_demo(out: str | Path, settings: LlmDemoSettings | None = None,
                 log: Callable[[str], None] = print) -> LlmDemoResult:
    """Encoder demo, world LM, image-only bridge, then questions about tones; everything saved under `out`."""
    s = settings or LlmDemoSettings()
    from ..train.digits_world import torch_threads

    with torch_threads(s.threads):
        return _run(Path(out), s, log)


def _run(out: Path, s: LlmDemoSettings, log: Callable[[str], None]) -> LlmDemoResult:
    from ..train.config import DataConfig, OptimConfig, RunConfig, TrainConfig
    from .bridge_dir import load_bridge
    from .recipe import train_bridge

    wall, cpu = time.perf_counter(), time.process_time()
    stages: dict[str, float] = {}
    lm_source = str(pretrained_lm(s.lm)) if s.lm else None  # a missing model is said before minutes of work
    out.mkdir(parents=True, exist_ok=True)
    tick = time.perf_counter()
    options = s.run_options()
    if lm_source is not None:  # the encoder's tiny matrices keep their own thread count beside a pretrained LM
        del options["threads"]
    base = replace(s.base, **options)
    encoder_result = run_demo(out / "model", base, log=log)
    stages["encoder"] = time.perf_counter() - tick

    if lm_source is None:
        tick = time.perf_counter()
        log("language model: training a small Llama (random init) on the digits world's sentences")
        train_world_lm(out / "llm", s, log)
        stages["language model"] = time.perf_counter() - tick

    tick = time.perf_counter()
    _, labels = load_digits()
    split = torch.randperm(len(labels), generator=generator(s.seed, 1))  # the encoder demo's split
    test_ids, train_ids = split[:400], split[400:]
    scratch = Path(tempfile.mkdtemp(prefix="bindspace-llm-demo-"))
    try:
        rows = write_image_rows(scratch / "data", train_ids, s.seed, natural=lm_source is not None)
        if lm_source is None:
            log(f"bridge: training a linear projector on {len(train_ids)} image <-> answer pairs (no audio)")
            # PandaGPT's recipe: a linear projection plus LoRA on the LM. With the small LM fully frozen
            # the projector stalls at about half the digits (measured): LoRA lets the LM meet it.
            llm = {"model": str(out / "llm"), "template": TEMPLATE.text,
                   "lora": {"rank": s.lora_rank, "alpha": 2.0 * s.lora_rank, "dropout": 0.0}}
            steps, batch_size, lr, noise = s.bridge_steps, s.batch_size, s.bridge_lr, s.noise
        else:
            log(f"bridge: training a linear projector into {lm_source} (frozen) on {len(train_ids)} image <-> "
                "answer pairs (no audio)")
            llm = {"model": lm_source, "template": CHAT}
            steps, batch_size, lr, noise = (s.pretrained_steps, s.pretrained_batch_size, s.pretrained_lr,
                                            s.pretrained_noise)
        config = TrainConfig(
            kind="llm",
            llm={**llm, "encoder": str(out / "model"), "noise": noise, "bridge_dir": str(out / "bridge")},
            data=DataConfig(train=(str(rows),), num_workers=0),
            run=RunConfig(out_dir=str(scratch / "run"), steps=steps, batch_size=batch_size,
                          log_every=max(steps // 10, 1), save_every=0, keep_checkpoints=1, seed=s.seed, device="cpu",
                          resume="never", tensorboard=False, progress=s.progress),
            optim=OptimConfig(lr=lr, weight_decay=0.0, warmup_steps=max(steps // 10, 1)),
        )
        train_bridge(config)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    stages["bridge"] = time.perf_counter() - tick

    tick = time.perf_counter()
    bridge = load_bridge(out / "bridge", modalities=["vision", "audio"])
    question = QUESTION if lm_source is None else NATURAL_QUESTION
    # (images, tones) to ask about: a pretrained LM's answers are batched, so it is asked more
    asked = (s.test_images, s.test_tones) if lm_source is None else (s.pretrained_test_images, s.pretrained_test_tones)
    image_acc, audio_acc, samples = _evaluate(bridge, test_ids, s, question, asked)
    saved = _saved_check(bridge, out / "model" / "examples", question)
    plain = None if lm_source is None else bridge.generate(PLAIN_QUESTION, max_new_tokens=24)
    stages["questions"] = time.perf_counter() - tick
    return LlmDemoResult(audio_acc, image_acc, encoder_result.audio_to_text, time.perf_counter() - wall,
                         time.process_time() - cpu, samples, out / "bridge", saved, stages,
                         language_model=f"{lm_source} (pretrained, frozen)" if lm_source else
                         LlmDemoResult.language_model, plain_answer=plain,
                         asked=(min(asked[0], len(test_ids)), asked[1]))


def pretrained_lm(spec: str) -> Path:
    """The file or directory `--lm` names (known names resolved); one line saying how to get it when absent."""
    from ..errors import CheckpointError
    from .gguf import check_gguf_file, is_gguf, resolve_language_model

    source = resolve_language_model(spec)
    if is_gguf(source):
        check_gguf_file(source)
    elif not (source / "config.json").is_file():
        raise CheckpointError(f"{source}: not a language model (give a .gguf file, a transformers directory, "
                              "or smollm2)")
    return source


def _evaluate(bridge: Any, test_ids: torch.Tensor, s: LlmDemoSettings, question: str,
              asked: tuple[int, int]) -> tuple[float, float, list[tuple[str, str]]]:
    """Greedy answers (batched) about `asked` = (held-out digit images, fresh random tones)."""
    from ..train.digits_world import digit_images, tone_features
    from .answers import answer_each

    encoder = bridge.encoder
    pixels, labels = digit_images(encoder.tower_config(Modality.VISION).input_size[-1])
    images = test_ids[:asked[0]]
    tone_labels = torch.randint(0, 10, (asked[1],), generator=generator(s.seed, 22))
    with torch.inference_mode():
        image_emb = encoder.encode(Modality.VISION, pixels[images])
        audio_emb = encoder.encode(Modality.AUDIO, tone_features(tone_labels, generator(s.seed, 23)))
    samples: list[tuple[str, str]] = []

    def score(embeddings: torch.Tensor, truth: torch.Tensor, what: str) -> float:
        answers = answer_each(bridge, question, embeddings, max_new_tokens=ANSWER_TOKENS)
        samples.extend((f"{what} of a {int(t)}", a) for t, a in list(zip(truth, answers))[:2])
        right = sum(answer_digit(a) == int(t) for a, t in zip(answers, truth))
        return right / max(len(truth), 1)

    return score(image_emb, labels[images], "image"), score(audio_emb, tone_labels, "tone"), samples


def _saved_check(bridge: Any, examples: Path, question: str) -> float | None:
    """Accuracy on the encoder demo's example WAVs, read by the standard audio loader (what `chat` reads)."""
    from .answers import answer_each

    files = [examples / f"tone_{d}.wav" for d in range(10)]
    if not all(f.is_file() for f in files):
        return None
    with torch.inference_mode():
        embeddings = bridge.embed(as_media([("audio", f) for f in files]))
    answers = answer_each(bridge, question, embeddings, max_new_tokens=ANSWER_TOKENS)
    return sum(answer_digit(a) == d for d, a in enumerate(answers)) / 10
