"""The one exception gpt2np raises for problems a user can fix (bad file, bad input, no network).

Its message is a complete paragraph: what is wrong, where, and what to do next. The command line
and the viewer show it as is, without a traceback.
"""


class GPT2npError(Exception):
    """A problem the user can fix; str(error) says what it is and what to do next."""
