"""EB-NeRD (Ekstra Bladet News Recommendation Dataset, the RecSys'24 Challenge) as a data source.

One module an idea:

    schema.py     the published files' columns and Arrow types; EbnerdFormatError
    reader.py     reading and validating the parquet files into flat arrays
    build.py      the files -> the same `Preprocessed` arrays as MIND (the challenge protocol)
    source.py     `EbnerdSource`: the files on disk, or downloaded through the mirrors
    synthetic.py  a synthetic world written in EB-NeRD's layout, with document vectors and
                  the truth (`SyntheticEbnerdSource`, data=synthetic_ebnerd)

The test set's submission file (predictions.zip) and its scorer are in
`newsrec.evaluation.ebnerd_submission`.
"""

from newsrec.data.ebnerd.schema import EbnerdFormatError
from newsrec.data.ebnerd.source import EbnerdSource

__all__ = ["EbnerdFormatError", "EbnerdSource"]
