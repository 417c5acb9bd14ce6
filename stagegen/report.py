"""What a proof found: the report of each function, as the CLI prints it and the decorator's
cache stores it.

Its own module, so that a warm `@staged` import, which reads a cached report back, loads no
part of the proof itself."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class LocalCheck:
    stage: int
    of: str  # the input whose local gradient was checked
    method: str  # "symbolic" or "sampled"


@dataclass
class FunctionReport:
    name: str
    stages: int
    local_checks: list[LocalCheck] = field(default_factory=list)
    reference: str = ""  # how the end-to-end reference gradient was computed
    points: list[dict] = field(default_factory=list)
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if any("check" in p for p in self.points):  # array code: checked element by element
            checked = f"every gradient element checked; {len(self.points)} points vs "
            return f"{self.name}: {checked}" + "; ".join([self.reference, *self.notes])
        symbolic = sum(c.method == "symbolic" for c in self.local_checks)
        callee = sum(c.method == "callee" for c in self.local_checks)
        sampled = len(self.local_checks) - symbolic - callee
        local = f"{len(self.local_checks)} local gradients ({symbolic} symbolic"
        local += f", {sampled} sampled" if sampled else ""
        local += f", {callee} by a callee's proven backward)" if callee else ")"
        if self.points:
            e2e = f"{len(self.points)} points vs {self.reference}, max rel. error {self.max_rel_error:.1e}"
        else:
            e2e = "end to end not checked: " + "; ".join(self.notes)
        return f"{self.name}: {local}; {e2e}"


@dataclass
class VerificationReport:
    functions: list[FunctionReport]

    @property
    def max_rel_error(self) -> float:
        return max((f.max_rel_error for f in self.functions), default=0.0)

    @property
    def max_abs_error(self) -> float:
        return max((f.max_abs_error for f in self.functions), default=0.0)

    @property
    def checks(self) -> int:
        return sum(len(f.local_checks) + len(f.points) for f in self.functions)

    def __str__(self) -> str:
        return "\n".join(f.summary() for f in self.functions)

    def to_dict(self) -> dict:
        return {"functions": [asdict(f) for f in self.functions]}

    @classmethod
    def from_dict(cls, data: dict) -> "VerificationReport":
        functions = []
        for f in data["functions"]:
            checks = [LocalCheck(**c) for c in f["local_checks"]]
            functions.append(FunctionReport(**{**f, "local_checks": checks}))
        return cls(functions)

    def __getitem__(self, name: str) -> FunctionReport:
        for f in self.functions:
            if f.name == name:
                return f
        raise KeyError(name)
