"""Exercises of each notebook, registered with fcnlib.exercises (one module per notebook: ex00, ex01, …)."""
