"""Reading control flow: ``if``/``elif``/``else``, early ``return``, ``for`` and ``while`` loops,
``break`` and ``continue``, into the block tree of program.py.

Every path through what is read is a path through the tree: an ``if`` whose arm ends in
``return``, ``break`` or ``continue`` gets the statements after it as its other arm. Inside a
compound statement a name bound again keeps its name (a loop carries it from one step to the
next; the backward restores the values it reads, step by step). A loop over a list (``for x in
xs``, ``zip``, ``enumerate``) is read as a loop over its indices, its elements as ``xs[i]``.
"""

from __future__ import annotations

import ast

from .expr import Bin, Elem, Expr, Length, Num, Var, walk
from .program import Branch, Exit, Loop, Stage, walk_nodes

_INDEX_NAMES = ("i", "j", "k", "t", "n")


class ControlFlowReader:
    """Statement reading for FunctionReader: the compound statements and their exits."""

    def _start_blocks(self) -> None:
        self.block: list = []  # the node list being read into
        self.count = 0  # the (n) of each forward line: stages and compound statements
        self.loops: list[Loop] = []  # the loops around the statement being read
        self.depth = 0  # compound statements around it
        self.carried: dict[str, str] = {}  # user name -> its one name inside a compound statement
        self.partly_bound: set[str] = set()  # bound on only some paths through an `if`
        self.output_name: str | None = None  # the name every `return` binds, with early returns

    def _next_number(self) -> int:
        self.count += 1
        return self.count

    def _generated_name(self, name: str) -> str:
        """The name a binding of ``name`` gets: a fresh version in straight-line code; inside a
        compound statement the same name each time (the value it had before, if any)."""
        if not self.depth:
            return self.versions.fresh(name, first=name not in self.env)
        if name not in self.carried:
            current = self.env.get(name)
            if isinstance(current, Var) and name not in self.list_params:
                self.carried[name] = current.name  # a parameter too: the loop carries it
            elif isinstance(current, Elem) or name in self.list_params:
                what = "the loop's element" if isinstance(current, Elem) else "a list parameter"
                raise self._refuse_rebinding(name, what)
            else:
                self.carried[name] = self.versions.fresh(name, first=name not in self.env)
        return self.carried[name]

    def _refuse_rebinding(self, name: str, what: str):
        return self.src.error(
            self.fn,
            f"`{name}` is {what}, and it is assigned again inside a loop or branch",
            f"bind a new name instead, e.g. `{name}_new = ...`",
        )

    # -- sequences -------------------------------------------------------------------

    def _sequence(self, stmts: list[ast.stmt]) -> None:
        """Read statements into the current block. An `if` one of whose arms always leaves
        (return, break, continue) takes the statements after it into its other arm."""
        for k, stmt in enumerate(stmts):
            rest = stmts[k + 1 :]
            if isinstance(stmt, (ast.Return, ast.Break, ast.Continue)):
                if rest:
                    raise self.src.error(
                        rest[0],
                        "code after `return`, `break` or `continue` never runs",
                        "remove it, or move it before",
                    )
                self._exit(stmt)
                return
            if isinstance(stmt, ast.If):
                then_leaves, else_leaves = always_leaves(stmt.body), always_leaves(stmt.orelse)
                if rest and then_leaves and else_leaves:
                    raise self.src.error(
                        rest[0],
                        "code after this `if` never runs: every branch of it leaves",
                        "remove it, or move it into a branch",
                    )
                if rest and (then_leaves or else_leaves):
                    self._if(stmt, [] if then_leaves else rest, rest if then_leaves else [])
                    return
                if rest and (may_leave(stmt.body) or may_leave(stmt.orelse)):
                    raise self.src.error(
                        rest[0],
                        "the `if` before this line leaves the loop or function on some of its "
                        "paths only",
                        "move the statements after it into the branch that does not leave",
                    )
                self._if(stmt, [], [])
            elif isinstance(stmt, ast.For):
                self._for(stmt)
            elif isinstance(stmt, ast.While):
                self._while(stmt)
            else:
                self._statement(stmt)

    def _exit(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.Return):
            if self.loops:
                raise self.src.error(
                    stmt,
                    "`return` inside a loop is not supported",
                    "`break` out of the loop, then return after it",
                )
            if not self.depth and self.output_name is None:
                self.final = self._return(stmt)  # the one return, at the end
            else:
                self._early_return(stmt)
            return
        kind = "break" if isinstance(stmt, ast.Break) else "continue"
        loop = self.loops[-1]
        if kind == "break" and loop.steps is None:
            loop.steps = self.versions.fresh("steps", first="steps" not in self.user_names)
        self.block.append(
            Exit(kind, self._next_number(), stmt.lineno + self.src.line_offset, stmt.col_offset + 1)
        )

    def _early_return(self, stmt: ast.Return) -> None:
        """With several `return`s, each binds the one output name (`out`)."""
        value = self._returned_value(stmt)
        if self.output_name is None:
            self.output_name = self.versions.fresh("out", first="out" not in self.user_names)
        self._bind_output(self.output_name, value, stmt)

    # -- branches --------------------------------------------------------------------

    def _decide_branches(self, body: list) -> None:
        """A branch whose arms bind a name its test reads cannot be tested again in the
        backward (the name holds the arm's value by then): its test becomes a stage of its
        own, ``cond3 = t > 0``, and the branch tests that name (the replay keeps it)."""
        for k in range(len(body) - 1, -1, -1):
            node = body[k]
            for inner in (
                [node.then, node.orelse]
                if isinstance(node, Branch)
                else [node.body] if isinstance(node, Loop) else []
            ):
                self._decide_branches(inner)
            if not isinstance(node, Branch):
                continue
            bound = {n.target for n in walk_nodes(node.then + node.orelse) if isinstance(n, Stage)}
            if not bound & {v.name for v in walk(node.test) if isinstance(v, Var)}:
                continue
            name = self.versions.fresh(f"cond{node.number}", first=True)
            stage = Stage(node.number, name, name, node.test, node.line, node.col)
            self.typed_condition(node.test)
            body.insert(k, stage)
            self.stages.append(stage)
            node.test = Var(name)

    def typed_condition(self, test: Expr) -> None:
        pass  # array code records the condition's type (arrays/parse.py)

    def _if(self, stmt: ast.If, then_tail: list[ast.stmt], else_tail: list[ast.stmt]) -> None:
        """Reads an `if`, each arm followed by the statements given for it."""
        test = self.condition(stmt.test)
        branch = Branch(
            self._next_number(),
            test,
            [],
            [],
            stmt.lineno + self.src.line_offset,
            stmt.col_offset + 1 + self.src.col_offset,
            f"if {self.src.segment(stmt.test) or ''}",
        )
        self.block.append(branch)
        outer, before = self.block, dict(self.env)
        self.depth += 1
        try:
            self.block = branch.then
            self._sequence(stmt.body + then_tail)
            then_env = self.env
            self.env = dict(before)
            self.block = branch.orelse
            self._sequence(stmt.orelse + else_tail)
            else_env = self.env
        finally:
            self.depth -= 1
            self.block = outer
        then_leaves = always_leaves(stmt.body + then_tail)
        else_leaves = always_leaves(stmt.orelse + else_tail)
        if then_leaves and not else_leaves:
            self.env = else_env
        elif else_leaves and not then_leaves:
            self.env = then_env
        else:
            self.env = self._merged(before, then_env, else_env)
        if not self.depth:
            self.carried = {}

    def _merged(self, before: dict, then_env: dict, else_env: dict) -> dict:
        """The names bound after an `if`: those bound on both paths (or before it)."""
        merged = {}
        for name in set(then_env) | set(else_env):
            if name in then_env and name in else_env:
                merged[name] = then_env[name]
            elif name in before:
                merged[name] = before[name]
            else:
                self.partly_bound.add(name)
        return merged

    def _note_trip_count(self, left: Expr, right: Expr) -> None:
        """`k < n` with `k` a counter (an integer the code counts): `n` is a trip count."""
        for a, b in ((left, right), (right, left)):
            counts = any(
                isinstance(v, Var) and (v.name in self.integer_values or v.name in self.integers)
                for v in walk(a)
            )
            if counts and self._is_integer(a) and isinstance(b, Var) and b.name in self.params:
                self.trip_counts.add(b.name)

    def _is_integer(self, e: Expr) -> bool:
        if isinstance(e, Num):
            return type(e.value) is int
        if isinstance(e, Var):
            return e.name in self.integer_values or e.name in self.integers
        if isinstance(e, Bin) and e.op in ("+", "-", "*"):
            return self._is_integer(e.left) and self._is_integer(e.right)
        return False

    def _mark_trip_counts(self) -> None:
        """A parameter compared only with counters, never read as a value, is a trip count:
        an integer, never differentiated."""
        values = {l.name for st in self.stages for l in walk(st.expr) if isinstance(l, Var)}
        for name in self.trip_counts - values:
            self.params[name].integer = True

    # -- loops -----------------------------------------------------------------------

    def _loop_body(self, loop: Loop, stmt: ast.For | ast.While) -> None:
        if stmt.orelse:
            raise self.src.error(
                stmt.orelse[0],
                "a loop's `else` block is not supported",
                "use a flag, or put the code after the loop",
            )
        self.block.append(loop)
        outer = self.block
        self.loops.append(loop)
        self.depth += 1
        try:
            self.block = loop.body
            self._sequence(stmt.body)
        finally:
            self.depth -= 1
            self.loops.pop()
            self.block = outer
        if not self.depth:
            self.carried = {}

    def _header(self, stmt: ast.stmt) -> str:
        """The user's text of a compound statement's first line, without its colon."""
        text = self.src.segment(stmt) or ""
        first = text.split("\n", 1)[0].rstrip()
        return first[:-1].rstrip() if first.endswith(":") else first

    def _while(self, stmt: ast.While) -> None:
        forever = isinstance(stmt.test, ast.Constant) and stmt.test.value is True
        loop = Loop(
            self._next_number(),
            [],
            test=None if forever else self.condition(stmt.test),
            steps=self.versions.fresh("steps", first="steps" not in self.user_names),
            line=stmt.lineno + self.src.line_offset,
            col=stmt.col_offset + 1 + self.src.col_offset,
            text=self._header(stmt),
        )
        self._loop_body(loop, stmt)

    def _for(self, stmt: ast.For) -> None:
        loop = Loop(
            self._next_number(),
            [],
            line=stmt.lineno + self.src.line_offset,
            col=stmt.col_offset + 1 + self.src.col_offset,
            text=self._header(stmt),
        )
        iterable = stmt.iter
        if _is_call(iterable, "reversed"):
            loop.backwards = True
            iterable = iterable.args[0]
        elements: list[tuple[ast.expr, str]] = []  # (target, list parameter)
        index_target: ast.expr | None = None
        if _is_call(iterable, "range"):
            index_target = stmt.target
            self._range(loop, iterable)
        elif _is_call(iterable, "enumerate") and isinstance(stmt.target, ast.Tuple):
            if loop.backwards:
                raise self._unsupported_iterable(stmt.iter)
            if len(stmt.target.elts) != 2 or len(iterable.args) != 1:
                raise self._unsupported_iterable(iterable)
            index_target = stmt.target.elts[0]
            elements = [(stmt.target.elts[1], self._list_name(iterable.args[0]))]
        elif _is_call(iterable, "zip") and isinstance(stmt.target, ast.Tuple):
            if len(stmt.target.elts) != len(iterable.args) or not iterable.args:
                raise self._unsupported_iterable(iterable)
            elements = [(t, self._list_name(a)) for t, a in zip(stmt.target.elts, iterable.args)]
        elif isinstance(iterable, ast.Name):
            elements = [(stmt.target, self._list_name(iterable))]
        else:
            raise self._unsupported_iterable(iterable)
        if elements:
            lists = [name for _, name in elements]
            loop.start = Num(0)
            loop.stop = Length(tuple(dict.fromkeys(lists)))
        if index_target is not None:
            if not isinstance(index_target, ast.Name):
                raise self.src.error(
                    index_target, "a loop index must be one name", "write `for i in range(n):`"
                )
            loop.index = self._index_name(index_target.id)
            self.env[index_target.id] = Var(loop.index)
            self.ended_indices.discard(index_target.id)
        else:
            loop.index = self._index_name(None)
        self.integers.add(loop.index)
        self._typed_index(loop.index)
        for target, list_name in elements:
            if not isinstance(target, ast.Name):
                raise self.src.error(
                    target, "unpack each element into one name", "write `for a, b in zip(w, x):`"
                )
            self.env[target.id] = Elem(list_name, Var(loop.index))
            self.element_names.add(target.id)
        self._loop_body(loop, stmt)
        if index_target is not None:
            self.ended_indices.add(index_target.id)

    def _index_name(self, user: str | None) -> str:
        if user is not None:
            if user in self.carried:
                return self.carried[user]
            current = self.env.get(user)
            if isinstance(current, Var) and current.name in self.integers:
                return current.name  # a loop index used again by a later loop
            name = self.versions.fresh(user, first=user not in self.env)
            if self.depth:
                self.carried[user] = name
            return name
        for candidate in _INDEX_NAMES:
            if candidate not in self.user_names and candidate not in self.versions.taken:
                self.versions.taken.add(candidate)
                return candidate
        return self.versions.fresh("i", first=False)

    def _range(self, loop: Loop, call: ast.Call) -> None:
        args = call.args
        if call.keywords or not 1 <= len(args) <= 3:
            raise self._unsupported_iterable(call)
        bounds = [self._integer(a) for a in args]
        if len(bounds) == 1:
            loop.start, loop.stop = Num(0), bounds[0]
        else:
            loop.start, loop.stop = bounds[0], bounds[1]
        if len(bounds) == 3:
            step = bounds[2]
            if not (isinstance(step, Num) and isinstance(step.value, int) and step.value > 0):
                raise self.src.error(
                    args[2],
                    "a loop's step must be a positive integer constant",
                    "count upwards, or use `reversed(range(...))`",
                )
            loop.step = step.value

    def _integer(self, node: ast.expr) -> Expr:
        """A trip count or bound: an integer constant, an integer parameter (never
        differentiated), `len(w)` of a list parameter, or a sum or difference of those."""
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return Num(node.value)
        if (
            isinstance(node, ast.Name)
            and node.id in self.params
            and self.env.get(node.id) == Var(node.id)
        ):
            self.params[node.id].integer = True
            return Var(node.id)
        if isinstance(node, ast.Name) and node.id in self.integer_values:
            return self.env[node.id]
        integer = self._array_integer(node)
        if integer is not None:
            return integer
        if _is_call(node, "len") and len(node.args) == 1 and isinstance(node.args[0], ast.Name):
            return Length((self._list_name(node.args[0]),))
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            from .expr import Bin

            return Bin(
                "+" if isinstance(node.op, ast.Add) else "-",
                self._integer(node.left),
                self._integer(node.right),
            )
        raise self.src.error(
            node,
            "a loop's bounds must be integers known when the loop starts",
            "use a constant, an integer parameter, `len(w)` or `x.shape[k]`",
        )

    def _array_integer(self, node: ast.expr) -> Expr | None:
        return None  # array code reads `x.shape[k]` (arrays/parse.py)

    def _typed_index(self, name: str) -> None:
        pass  # array code records the loop index's type (arrays/parse.py)

    def _list_name(self, node: ast.expr) -> str:
        if not (isinstance(node, ast.Name) and node.id in self.params):
            raise self.src.error(
                node,
                "only a list parameter can be looped over",
                "loop over a parameter, or over `range(len(w))`",
            )
        name = node.id
        if name in self.scalar_params:
            raise self.src.error(
                node, f"`{name}` is used both as a number and as a list", "use it one way only"
            )
        self.list_params.add(name)
        self.looped_lists.add(name)
        return name

    def _unsupported_iterable(self, node: ast.expr):
        return self.src.error(
            node,
            "this loop's iterable is not supported",
            "loop over `range(...)`, a list parameter, `zip(w, x)`, `enumerate(w)` or "
            "`reversed(...)` of those",
        )


def always_leaves(stmts: list[ast.stmt]) -> bool:
    """Whether every path through the statements ends in return, break or continue."""
    if not stmts:
        return False
    last = stmts[-1]
    if isinstance(last, (ast.Return, ast.Break, ast.Continue)):
        return True
    if isinstance(last, ast.If):
        return always_leaves(last.body) and always_leaves(last.orelse)
    return False


def may_leave(stmts: list[ast.stmt]) -> bool:
    """Whether some path through the statements returns, or leaves the loop around them."""
    for stmt in stmts:
        if isinstance(stmt, (ast.Return, ast.Break, ast.Continue)):
            return True
        if isinstance(stmt, ast.If) and (may_leave(stmt.body) or may_leave(stmt.orelse)):
            return True
        if isinstance(stmt, (ast.For, ast.While)) and any(
            isinstance(n, ast.Return) for n in ast.walk(stmt)
        ):
            return True
    return False


def _is_call(node: ast.expr, name: str) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == name
        and not node.keywords
        and bool(node.args)
    )
