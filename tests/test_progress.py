"""Progress bars in a log file: one line per redraw, not one ever-growing line."""
import io

from lada.progress import LOG_INTERVAL_SECONDS, progress_bar


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_file_gets_one_line_per_redraw_at_most_every_interval():
    log = io.StringIO()
    for _ in progress_bar(range(1000), file=log, desc="work", mininterval=0):
        pass
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) >= 2 and lines[-1].startswith("work: 100%") and "1000/1000" in lines[-1]
    quiet = io.StringIO()  # the default interval: the first and the last line only
    for _ in progress_bar(range(1000), file=quiet, desc="work"):
        pass
    assert LOG_INTERVAL_SECONDS >= 10 and len(quiet.getvalue().splitlines()) == 2


def test_a_terminal_gets_tqdms_bar_redrawn_in_place():
    terminal = Terminal()
    for _ in progress_bar(range(50), file=terminal, desc="work", mininterval=0):
        pass
    assert "\r" in terminal.getvalue() and terminal.getvalue().count("\n") == 1
