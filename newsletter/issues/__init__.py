"""Issues: the stage between the catalog and delivery.

* ``selection``: which comparisons go into an issue (and its week id);
* ``verdicts``: the summary and verdict of each comparison (``wording`` the words);
* ``render``: the email (MJML, inlined CSS, text part) within its size budget;
* ``placeholders``: each recipient's values in the rendered parts;
* ``archive``: the issue's files on disk, written atomically;
* ``build``: build, rebuild and edit an issue (``build_issue``, ``edit_issue``...);
* ``records``: an issue's database record: read, list, freeze (re-exported here);
* ``preview``: the browser preview of an issue;
* ``notes``: the editor's note.

This package's own namespace stays light: delivery imports it, and must not load the
renderer (MJML, premailer) to send an issue that is already rendered.
"""

from newsletter.issues.records import (
    IssueFieldError,
    IssueFrozenError,
    IssueInfo,
    get_issue,
    latest_issue,
    list_issues,
    mark_sending,
    mark_sent,
)

__all__ = [
    "IssueFieldError",
    "IssueFrozenError",
    "IssueInfo",
    "get_issue",
    "latest_issue",
    "list_issues",
    "mark_sending",
    "mark_sent",
]
