"""A JSONL store of decomposed question sets, keyed by prompt and decomposer config hash.

It lives in the run directory (``questions.jsonl``), so each prompt is decomposed once per run — an llm decomposer
is slow and not guaranteed to repeat itself — and the file is the exact record of the questions that shaped the
reward. A line is one ``QuestionSet.to_dict()`` plus the key it is stored under: the decomposition's fingerprint
(``prompts.registry.config_hash``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from drf.errors import QuestionError
from prompts.schema import QuestionSet


class QuestionCache:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._sets: dict[tuple[str, str], QuestionSet] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        with self.path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as err:
                    raise QuestionError(
                        f"{self.path}:{lineno}: invalid JSON in the question cache ({err.msg}); delete the line or file"
                    ) from None
                qset = QuestionSet.from_dict(data, where=f"{self.path}:{lineno}")
                self._sets[(qset.prompt, qset.config_hash)] = qset

    def get(self, prompt: str, fingerprint: str) -> QuestionSet | None:
        return self._sets.get((prompt.strip(), fingerprint))

    def put(self, qset: QuestionSet, fingerprint: str) -> None:
        """Store ``qset`` under ``fingerprint``, that of the config that was asked (also when the llm fell back)."""
        key = (qset.prompt, fingerprint)
        if key in self._sets:
            return
        self._sets[key] = qset
        record = qset.to_dict() | {"config_hash": key[1]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")

    def __len__(self) -> int:
        return len(self._sets)

    def __iter__(self) -> Iterator[QuestionSet]:
        """The stored sets in the order they were first written."""
        return iter(self._sets.values())
