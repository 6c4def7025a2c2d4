"""Build the offline task files of harness/eval/tasks/ (deterministic; rerun to regenerate them).

    python scripts/build_eval_tasks.py [--out harness/eval/tasks] [--items 200]

* `pydoc_cloze.jsonl`: last-word cloze items from the Python help topics (`pydoc_data.topics`,
  part of CPython; Python Software Foundation License). Each item is a sentence cut before its last
  word; the choices are that word and 3 distractors drawn from the answers of other items (so every
  choice is a word the text uses in that position somewhere), in a seeded order. The harness's
  `embedded` training source includes these help pages, so a proxy trained on it sees the same
  kind of text (and may have seen the very sentence: these items measure in-distribution
  progress, not generalization).
* `sequence_next.jsonl`: a synthetic generative task with a checkable answer (ours, MIT like the
  repository): four terms of an arithmetic progression, answer the next one
  ("12, 14, 16, 18," -> "20").
* `word_repeat.jsonl`: a synthetic copying task (ours, MIT): two of the 60 most frequent short words
  of the help topics alternating, answer the next one ("the object the object the object the" ->
  "object"): in-context copying, which small models pick up before they can continue arithmetic.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

SEED = 20261129
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"^[a-z]{4,12}$")


def cloze_items(n_items: int, rng: random.Random) -> list[dict]:
    from pydoc_data.topics import topics

    candidates = []
    for topic in sorted(topics):
        text = " ".join(topics[topic].split())  # one line: the help pages wrap prose at ~70 columns
        for sentence in _SENTENCE.split(text):
            words = sentence.rstrip(".!?").split(" ")
            if not 8 <= len(words) <= 30 or not _WORD.match(words[-1]) or any(c in sentence for c in "*=`|>"):
                continue
            candidates.append((" ".join(words[:-1]), words[-1]))
    rng.shuffle(candidates)
    seen, picked = set(), []
    for context, answer in candidates:
        if context not in seen:
            seen.add(context)
            picked.append((context, answer))
        if len(picked) == n_items:
            break
    answers = sorted({a for _, a in picked})
    items = []
    for i, (context, answer) in enumerate(picked):
        distractors = rng.sample([a for a in answers if a != answer], 3)
        choices = distractors + [answer]
        rng.shuffle(choices)
        items.append({"id": i, "context": context, "choices": choices, "gold": choices.index(answer)})
    return items


def sequence_items(n_items: int, rng: random.Random) -> list[dict]:
    items = []
    for i in range(n_items):
        start, step = rng.randint(0, 60), rng.choice([1, 1, 2, 5, 10])
        terms = [start + k * step for k in range(5)]
        items.append({"id": i, "prompt": ", ".join(map(str, terms[:4])) + ",", "answer": str(terms[4])})
    return items


def repeat_items(n_items: int, rng: random.Random) -> list[dict]:
    from collections import Counter

    from pydoc_data.topics import topics

    # Frequent short words (mostly one or two tokens of a small BPE), so tiny models can copy them.
    counts = Counter(w for text in topics.values() for w in text.split() if re.fullmatch(r"[a-z]{2,6}", w))
    words = sorted(w for w, _ in counts.most_common(60))
    items = []
    for i in range(n_items):
        a, b = rng.sample(words, 2)
        items.append({"id": i, "prompt": " ".join([a, b] * 3 + [a]), "answer": b})
    return items


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "harness/eval/tasks")
    parser.add_argument("--items", type=int, default=200)
    args = parser.parse_args()
    write_jsonl(args.out / "pydoc_cloze.jsonl", cloze_items(args.items, random.Random(SEED)))
    write_jsonl(args.out / "sequence_next.jsonl", sequence_items(args.items // 2, random.Random(SEED + 1)))
    write_jsonl(args.out / "word_repeat.jsonl", repeat_items(args.items // 2, random.Random(SEED + 2)))
    print(f"wrote pydoc_cloze.jsonl, sequence_next.jsonl and word_repeat.jsonl to {args.out}")


if __name__ == "__main__":
    main()
