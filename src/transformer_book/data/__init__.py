"""Generated tasks and small corpora for the lessons."""
