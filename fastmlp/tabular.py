"""A user's CSV as a scikit-learn Pipeline: reading it (pandas) and the preprocessing a real
table needs — missing values imputed, categorical columns one-hot encoded, numeric columns
and a regression target standardised — in front of a fastmlp (or any) estimator.

Numbers are read as a spreadsheet writes them: a decimal point or a decimal comma (half of
Europe's exports: `1,5;2,75`), with or without thousands separators (`1.234,5`, `1,234.5`,
`1 234,5`), the convention decided for the whole file by which one reads more of its cells.
A column of numbers with a few text cells is read as numbers, those cells missing, with a
note naming them; a text column with a different value in every row is an identifier, left
out with a note (one-hot encoding it would give the network one input per row).

Every mistake a user can make with a file or a target raises `UsageError`, one line that
says what is wrong and what to do; `fastmlp train` and `fastmlp predict` print it and exit
with status 2.
"""
import csv
import difflib
import os
import re

import numpy as np

#: Separators the reader tells apart (by `csv.Sniffer` over the file's first lines).
SEPARATORS = ",;\t|"
#: A categorical column with more distinct values than this gets a note: one-hot encoding
#: it adds that many inputs, and an identifier or free-text column is usually better dropped.
MANY_CATEGORIES = 100
#: A column whose non-missing cells are numbers but for at most this share is read as
#: numbers (the rest missing, with a note); below it, the column is text.
NUMERIC_SHARE = 0.9
#: A text column with a different value in each of at least this many rows is an identifier.
IDENTIFIER_ROWS = 20

#: The two ways a spreadsheet writes numbers: (decimal mark, thousands separators), each as
#: a pattern a whole cell must match (spaces, no-break spaces and apostrophes group digits in
#: either).
_GROUPS = "[ \u00a0\u202f']"
NUMBER_FORMATS = {
    ".": re.compile(r"^[+-]?(\d+|\d{1,3}((,|%s)\d{3})+)?(\.\d*)?([eE][+-]?\d+)?$" % _GROUPS),
    ",": re.compile(r"^[+-]?(\d+|\d{1,3}((\.|%s)\d{3})+)?(,\d*)?([eE][+-]?\d+)?$" % _GROUPS),
}


class UsageError(Exception):
    """A mistake in what the user gave (a file, a column, an option): the message says it."""


def read_csv(path):
    """The table in `path` as a DataFrame, and notes on how it was read: the separator
    sniffed, a byte-order mark and blank lines skipped, quoted fields kept whole, column names
    stripped, numbers in the file's decimal convention (numbers_read), blanks ("", NA, n/a,
    …) as missing. Raises UsageError when it cannot be read."""
    import pandas as pd

    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise UsageError(f"{path}: not a file")
    encoding = _encoding(path)
    with open(path, encoding=encoding, newline="") as f:
        head = f.read(64 * 1024)
    if not head.strip():
        raise UsageError(f"{path}: the file is empty")
    try:
        sep = csv.Sniffer().sniff(head, delimiters=SEPARATORS).delimiter
    except csv.Error:  # one column, or too irregular to tell: the standard separator
        sep = ","
    mark, thousands = number_format(head, sep)
    try:
        frame = pd.read_csv(path, sep=sep, encoding=encoding, skip_blank_lines=True,
                            skipinitialspace=True, decimal=mark, thousands=thousands)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError,
            ValueError) as exc:
        raise UsageError(f"{path}: not a readable CSV file: {first_line(exc)}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame.dropna(how="all")  # rows of separators only, trailing ";;;" lines
    if frame.empty:
        raise UsageError(f"{path}: a header row but no data rows")
    duplicates = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if duplicates:
        raise UsageError(f"{path}: columns named more than once: {duplicates}")
    return numbers_read(frame, mark)


def number_format(head, sep):
    """(decimal mark, thousands separator or None) of a file whose first bytes are `head`:
    the convention that reads more of their cells as numbers, and the separator its numbers
    group digits with, if any (pandas' C parser then reads the whole file in it)."""
    import io

    import pandas as pd

    lines = head.splitlines()[:-1] or head.splitlines()  # the last may be cut short
    try:
        sample = pd.read_csv(io.StringIO("\n".join(lines)), sep=sep, dtype=str,
                             skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError):
        return ".", None
    mark = decimal_mark(sample)
    grouped = re.compile(r"\d([,. \u00a0\u202f'])\d{3}(?!\d)")
    seen = {}
    for c in sample.columns:
        cells = _cells(sample[c])
        cells = cells[cells.str.fullmatch(NUMBER_FORMATS[mark].pattern)]
        for separator in cells.str.extract(grouped, expand=False).dropna():
            if separator != mark:
                seen[separator] = seen.get(separator, 0) + 1
    thousands = max(seen, key=seen.get) if seen else None
    return mark, (None if thousands == sep else thousands)


def decimal_mark(frame):
    """"." or ",": the convention under which more of the frame's text cells are numbers
    (a cell only one of them reads decides; "." when none does)."""
    counts = dict.fromkeys(NUMBER_FORMATS, 0)
    for c in frame.columns:
        cells = _cells(frame[c])
        digits = cells.str.contains(r"\d")
        dot, comma = (cells.str.fullmatch(NUMBER_FORMATS[m].pattern) & digits
                      for m in (".", ","))
        counts["."] += int((dot & ~comma).sum())
        counts[","] += int((comma & ~dot).sum())
    return "," if counts[","] > counts["."] else "."


def _cells(column):
    """A column's non-blank cells, as stripped text."""
    cells = column.dropna().astype(str).str.strip()
    return cells[cells != ""]


def numbers(cells, mark):
    """Text cells as floats in the convention `mark` ("." or ","), NaN where a cell is not a
    number written that way."""
    import pandas as pd

    valid = (cells.str.fullmatch(NUMBER_FORMATS[mark].pattern)
             & cells.str.contains(r"\d"))
    thousands = "," if mark == "." else "\\."
    plain = cells[valid].str.replace(f"[{thousands} \u00a0\u202f']", "", regex=True)
    if mark == ",":
        plain = plain.str.replace(",", ".", regex=False)
    out = pd.Series(np.nan, index=cells.index)
    out[valid] = pd.to_numeric(plain, errors="coerce").astype(float)
    return out


def numbers_read(frame, mark):
    """The frame as pandas read it in the file's convention `mark`, with its columns of
    numbers but for a few text cells read as numbers (those cells missing), and notes: on a
    decimal comma, and on each column whose text cells were read as missing."""
    import pandas as pd

    notes = [] if mark == "." else ["numbers written with a decimal comma: read as numbers"]
    out = frame.copy()
    for c in frame.columns:
        if frame[c].dtype.kind in "biuf":
            continue  # pandas read every cell as a number (or a bool)
        cells = _cells(frame[c])
        values = numbers(cells, mark)
        text = values.isna()
        if cells.empty or text.mean() > 1 - NUMERIC_SHARE:
            continue  # a text column
        column = pd.Series(np.nan, index=frame.index)
        column[values.index] = values
        out[c] = column
        examples = ", ".join(repr(v) for v in dict.fromkeys(cells[text]))
        n = int(text.sum())
        notes.append(f"column {c!r} holds numbers but {n} cell{'s' * (n > 1)} of text "
                     f"({examples[:80]}): read as missing")
    return out, notes


def _encoding(path):
    """UTF-8 (with or without Excel's byte-order mark), else Windows-1252: what a
    spreadsheet writes."""
    with open(path, "rb") as f:
        data = f.read(1 << 20)
    try:
        data.decode("utf-8")
        return "utf-8-sig"
    except UnicodeDecodeError as exc:
        if exc.start > len(data) - 4:  # a character cut by the sample's end
            return "utf-8-sig"
        return "cp1252"


def first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def split_target(frame, target, path, regress):
    """The feature columns and the target column (rows without a target dropped, with a
    note in `notes`); UsageError for a missing column or a target that cannot be learned."""
    if target not in frame.columns:
        close = difflib.get_close_matches(target, frame.columns, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"{path}: no column {target!r}{hint} (columns: "
                         f"{', '.join(frame.columns)})")
    X = frame.drop(columns=[target])
    y = frame[target]
    if X.shape[1] == 0:
        raise UsageError(f"{path}: no feature columns besides the target {target!r}")
    notes = []
    missing = y.isna().to_numpy()
    if missing.all():
        raise UsageError(f"{path}: the target column {target!r} is empty")
    if missing.any():
        notes.append(f"{missing.sum()} rows without a {target!r} value left out")
        X, y = X[~missing], y[~missing]
    if regress:
        import pandas as pd

        numeric = pd.to_numeric(y, errors="coerce")
        bad = numeric.isna().to_numpy()
        if bad.any():
            raise UsageError(f"{path}: --regress needs a numeric target, but {target!r} holds "
                             f"{y[bad].iloc[0]!r}")
        return X, numeric.to_numpy(dtype=np.float64), notes
    from sklearn.utils.multiclass import type_of_target

    values = y.to_numpy()
    if y.dtype.kind not in "biuf":
        values = y.astype(str).str.strip().to_numpy(dtype=object)
    if type_of_target(values) == "continuous":
        raise UsageError(f"{path}: the target {target!r} holds {len(np.unique(values))} "
                         "distinct non-integer numbers: to predict a number, pass --regress")
    labels, counts = np.unique(values, return_counts=True)
    labels = labels.tolist()
    if len(labels) < 2:
        raise UsageError(f"{path}: the target {target!r} has a single class {labels[0]!r}; "
                         "a classifier needs at least two")
    lone = [label for label, count in zip(labels, counts) if count < 2]
    if lone:
        hint = (f" ({len(labels)} classes of numbers: to predict a number, pass --regress)"
                if values.dtype.kind in "biuf" and len(labels) > 10 else "")
        raise UsageError(f"{path}: class {lone[0]!r} of {target!r} has a single row; every "
                         f"class needs at least two (one to train on, one to test on){hint}")
    return X, values, notes


def without_identifiers(X):
    """X without its identifier columns — text with a different value in every row, at least
    IDENTIFIER_ROWS of them (a name, a code, a free-text note): a network cannot generalise
    from them, and one-hot encoding makes an input per row — and a note on each."""
    notes, keep = [], []
    for c in X.columns:
        cells = X[c].dropna()
        if (X[c].dtype.kind not in "biuf" and len(X) >= IDENTIFIER_ROWS
                and cells.nunique() == len(X)):
            notes.append(f"column {c!r} has a different value in every row: an identifier, "
                         "left out (a model cannot learn from it)")
        else:
            keep.append(c)
    if not keep:
        raise UsageError("every feature column is an identifier (a different value in every "
                         "row): nothing to learn from")
    return X[keep], notes


def preprocessor(X, dtype=np.float64):
    """A ColumnTransformer for the feature frame X: numeric columns median-imputed and
    standardised, the others most-frequent-imputed and one-hot encoded (a category unseen
    in training encodes as all zeros); with notes on what deserves a look."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c for c in X.columns if X[c].dtype.kind in "biuf"]
    categorical = [c for c in X.columns if c not in numeric]
    notes = [f"column {c!r} is empty and left out" for c in X.columns if X[c].isna().all()]
    for c in categorical:
        n = X[c].nunique()
        if n > MANY_CATEGORIES:
            notes.append(f"column {c!r} has {n} distinct values, one-hot encoded as as many "
                         "inputs; drop it from the file if it is an identifier or free text")
    parts = []
    if numeric:
        parts.append(("numeric", Pipeline([
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler())]), numeric))
    if categorical:
        parts.append(("categorical", Pipeline([
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False,
                                     dtype=dtype))]), categorical))
    return ColumnTransformer(parts, sparse_threshold=0.0), notes


def as_features(X, dtype, categorical=None):
    """X with numeric columns in `dtype` and the others as text, stripped (missing values
    stay missing). `categorical` names the text columns when a fitted model already decided
    them, so a column read as numbers in one file and as text in another is encoded as in
    training; UsageError when a numeric column holds text."""
    import pandas as pd

    X = X.copy()
    for c in X.columns:
        if categorical is None and X[c].dtype.kind in "biuf" or (
                categorical is not None and c not in categorical):
            values = pd.to_numeric(X[c], errors="coerce")
            bad = values.isna() & X[c].notna()
            if bad.any():
                raise UsageError(f"column {c!r} is numeric in the model, but holds "
                                 f"{X[c][bad].iloc[0]!r}")
            X[c] = values.astype(dtype)
        else:
            X[c] = X[c].map(lambda v: v if pd.isna(v) else str(v).strip()).astype(object)
    return X


def pipeline(X, model, regress, dtype=np.float64):
    """The whole model for the feature frame X: preprocessing, then `model` — for a
    regressor wrapped in a TransformedTargetRegressor that standardises the target (a
    network's weights start scaled for outputs of order one); with notes."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    pre, notes = preprocessor(X, dtype)
    if regress:
        model = TransformedTargetRegressor(regressor=model, transformer=StandardScaler())
    return Pipeline([("preprocess", pre), ("model", model)]), notes
