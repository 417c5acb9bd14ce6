"""stagegen's benchmark suite (issue 5): ``python -m stagegen.bench [--quick] [--out DIR]``.

Gradient runtime of the generated backward against the notes' hand-written code, SymPy's
``lambdify(cse=True)`` gradient, autograd, micrograd, PyTorch and JAX (each where installed and
where it can express the function); the gradient's cost relative to the forward; generation and
verification time against program size; import cost; time and peak memory of backwards through
loops against the number of steps (``--parts loops``). Prints a table, writes it as Markdown
(``results.md``), as JSON (``results.json``) and as a plot (``benchmark.png``).
The NumPy two-layer net's gradient (issue 6) has its own: ``python -m stagegen.bench.layers``.

The competitors are optional: ``pip install ".[bench]"``. Nothing here is imported by
``import stagegen``.
"""
