"""pytest settings for the notebooks (nbval), which live outside tests/.

nbval waits only 5 seconds for a cell's output messages after the kernel has replied; on a busy
2-core machine a long training cell's last messages can take longer, and the cell then fails
with "Timeout of 5 seconds exceeded waiting for output" although nothing in it failed. The cell
time limit itself (--nbval-cell-timeout) is unchanged.
"""


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "output_timeout"):  # an nbval notebook cell
            item.output_timeout = 60
