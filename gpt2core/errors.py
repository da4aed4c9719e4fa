"""The one base class of errors a user can cause (bad path, bad setting, bad corpus, odd
text). Front ends catch it and show its message as one line; anything else is a bug and
still raises."""


class UserError(ValueError):
    """An error whose message, alone, tells the user what is wrong and what to do."""
