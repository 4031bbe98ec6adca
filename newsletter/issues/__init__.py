"""Issues: the stage between the catalog and delivery.

* ``selection``: which comparisons go into an issue (and its week id);
* ``verdicts``: the summary and verdict of each comparison (``verdicts_text`` the wording);
* ``render``: the email (MJML, inlined CSS, text part) within its size budget;
* ``archive``: the issue's files on disk, written atomically;
* ``build``: build, rebuild, edit, list, freeze (the public API, re-exported here);
* ``preview``: the browser preview of an issue;
* ``notes``: the editor's note.
"""

from newsletter.issues.build import (
    PREHEADER_EDIT_LIMIT,
    SUBJECT_EDIT_LIMIT,
    BuildResult,
    Edits,
    IssueFieldError,
    IssueFrozenError,
    IssueInfo,
    build_issue,
    check_edits,
    edit_issue,
    get_issue,
    issue_content,
    latest_issue,
    list_issues,
    mark_sending,
    mark_sent,
    rebuild_issue,
)

__all__ = [
    "PREHEADER_EDIT_LIMIT",
    "SUBJECT_EDIT_LIMIT",
    "BuildResult",
    "Edits",
    "IssueFieldError",
    "IssueFrozenError",
    "IssueInfo",
    "build_issue",
    "check_edits",
    "edit_issue",
    "get_issue",
    "issue_content",
    "latest_issue",
    "list_issues",
    "mark_sending",
    "mark_sent",
    "rebuild_issue",
]
