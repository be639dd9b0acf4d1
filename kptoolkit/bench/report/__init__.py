"""The bench's results and their text forms: rows, intervals, the header and published numbers."""
