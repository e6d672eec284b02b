"""Domain primitives and the server runtime that every package may import:
the error tree, wire codecs, filters, the global order, canonical scoring,
score bounds and typed settings (DESIGN §1)."""
