"""nbgrader configuration of the lfd13 assignments (Lecture 13).

Run nbgrader from this directory, or better through ``course.py`` (``make release``, ``make grade``):
it also collects submissions without overwriting anything and grades them in a temporary copy.
Autograding executes every notebook in a sandboxed kernel (bubblewrap, an environment without the
reference libraries) and judges the hidden tests outside it (``grading/sandbox.py``); the
hidden-test logic in ``grading/`` is never released.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "grading"))

from nbconvert.preprocessors import ClearMetadataPreprocessor  # noqa: E402
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import (  # noqa: E402
    AssignLatePenalties, CheckCellMetadata, ClearHiddenTests, GetGrades, IgnorePattern, LimitOutput, SaveAutoGrades)
from nbgrader.preprocessors import ClearOutput, DeduplicateIds, OverwriteCells, OverwriteKernelspec  # noqa: E402
from sandbox import CapSources, RebuildCellMetadata, SandboxedExecute  # noqa: E402

c = get_config()  # noqa: F821 - provided by traitlets when it loads this file

c.CourseDirectory.course_id = "lfd13"
c.CourseDirectory.assignment_id = ""
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Autograding: rebuild every cell's nbgrader metadata from the gradebook (nothing a student wrote
# there is used), restore test cells students edited or deleted, run each notebook in the sandbox
# with a time limit per cell (an infinite loop is interrupted, the rest of the notebook still runs)
# and one per notebook (SandboxedExecute.notebook_timeout, default 300 s). course.py grade passes its
# options (--timeout, --notebook-timeout, --unsafe-no-sandbox, --cgroup) as nbgrader options, never
# through the environment.
c.OverwriteCells.add_missing_cells = True
c.Autograde.sanitize_preprocessors = [
    RebuildCellMetadata, ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata,
]
c.Execute.timeout = 60
c.Execute.interrupt_on_timeout = True
c.Execute.raise_on_iopub_timeout = False
c.Autograde.autograde_preprocessors = [
    SandboxedExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades,
    AssignLatePenalties, CheckCellMetadata,
]
# Feedback shows each hidden test's verdict (the cell output) but not the hidden-test lines; sources are
# cut before they are highlighted. course.py feedback then passes the whole page through an allow-list
# sanitiser (nh3): nbgrader's template renders markdown cells without the exporter's cleaner.
c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, CapSources, CSSHTMLHeaderPreprocessor]
c.HTMLExporter.sanitize_html = True  # outputs: no scripts or event handlers (markdown: see course.py)
c.Exchange.root = os.path.join(HERE, "exchange")  # only used with JupyterHub's nbgrader exchange
