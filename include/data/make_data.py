"""Rebuild the sample data from the diabetes set that ships inside scikit-learn (no download).

    python include/data/make_data.py

Writes, next to this file:
  landing/diabetes/date=YYYY-MM-DD/part-00000.csv   training data as it lands, one partition
                                  a day (features + target); the newest holds the whole
                                  training split, older ones a part of it
  holdout/diabetes_holdout.csv    held-out rows for pre-prod validation (features + target)
  scoring/date=YYYY-MM-DD/part-00000.csv   daily scoring input partitions (features + id)
The split and the partitions are seeded, so the files are the same on every machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
SCORING_DATES = ("2026-11-20", "2026-11-21", "2026-11-22")
# Training data landed on these dates: date -> rows of the training split (None = all of it).
LANDING_DATES = {"2026-11-20": 300, "2026-11-22": None}
ROWS_PER_PARTITION = 250
SEED = 7


def build(out: Path = HERE) -> dict[str, int]:
    frame = load_diabetes(scaled=False, as_frame=True).frame
    train, holdout = train_test_split(frame, test_size=0.2, random_state=SEED)
    (out / "holdout").mkdir(parents=True, exist_ok=True)
    holdout.to_csv(out / "holdout" / "diabetes_holdout.csv", index=False)
    for date, rows in LANDING_DATES.items():
        part = out / "landing" / "diabetes" / f"date={date}"
        part.mkdir(parents=True, exist_ok=True)
        (train if rows is None else train.head(rows)).to_csv(part / "part-00000.csv", index=False)

    features = frame.drop(columns="target")
    rng = np.random.default_rng(SEED)
    counts = {f"landing {d}": n or len(train) for d, n in LANDING_DATES.items()}
    counts["holdout"] = len(holdout)
    for day, date in enumerate(SCORING_DATES):
        # New patients look like the old ones: resample rows, keep values in their observed ranges.
        sample = features.sample(n=ROWS_PER_PARTITION, replace=True, random_state=SEED + day).reset_index(
            drop=True
        )
        jitter = rng.normal(0.0, 0.01, size=sample.shape) * sample.to_numpy()
        sample = (sample + jitter).clip(features.min(), features.max(), axis=1)
        sample["sex"] = sample["sex"].round()
        sample = sample.round(4)
        sample.insert(0, "patient_id", [f"{date}-{i:05d}" for i in range(len(sample))])
        part = out / "scoring" / f"date={date}"
        part.mkdir(parents=True, exist_ok=True)
        sample.to_csv(part / "part-00000.csv", index=False)
        counts[date] = len(sample)
    return counts


if __name__ == "__main__":
    for name, rows in build().items():
        print(f"{name}: {rows} rows")
