"""The instructor key: a second route to every exercise's answer (fcnlib.exercises). Loaded by path,
only on request; the student edition (python -m fcnlib.edition) leaves this folder out."""
