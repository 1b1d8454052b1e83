"""Model-file throughput: Unity Catalog presigned URLs through a workspace vs the MLflow server.

    .venv/bin/python -m benchmarks.uc_artifacts [--mb 64] [--files 4] [--rounds 3]

Starts a real ``mlflow server`` and one emulated workspace with a metastore holding ``dev.ml``,
makes a directory of ``--files`` random files totalling ``--mb`` MB, then moves it both ways,
side by side on the same machine:

- presigned (what ``databricks-uc`` does for a model version): a pending version of
  ``dev.ml.bench``, files uploaded with mlflow's ``PresignedUrlArtifactRepository``
  (``fs/create-upload-url`` then a PUT per file to the workspace's signed URL) and downloaded
  the same way (``fs/directories`` listing, ``fs/create-download-url``, GET);
- direct: the same directory logged to, and downloaded from, a run's artifacts on the MLflow
  server (``mlflow-artifacts`` through its HTTP proxy).

Each round uses a new version / run; the figure is the median MB/s over ``--rounds``.
Results go to ``benchmarks/results/uc_artifacts-<time>.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.results_file import save, timed  # noqa: E402

TOKEN = "dapi-bench-uc-artifacts"


def make_payload(root: Path, mb: int, files: int) -> Path:
    src = root / "payload"
    src.mkdir()
    size = mb * 1024 * 1024 // files
    for i in range(files):
        (src / f"part-{i}.bin").write_bytes(os.urandom(size))
    (src / "MLmodel").write_text("flavors: {}\n")
    return src


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    import requests

    from devstack.services import start_mlflow_server, start_workspace
    from devstack.workspace.unity_catalog.backend import Metastore

    with tempfile.TemporaryDirectory(prefix="bench-uc-artifacts-") as tmp:
        root = Path(tmp)
        payload = make_payload(root, args.mb, args.files)
        total_mb = sum(f.stat().st_size for f in payload.iterdir()) / 1024 / 1024
        metastore = Metastore(root / "metastore")
        metastore.create_catalog("dev")
        metastore.create_schema("dev", "ml")
        metastore.close()
        server = start_mlflow_server(root / "mlflow", name="bench-mlflow")
        workspace = start_workspace(
            "bench",
            root / "ws",
            token=TOKEN,
            mlflow_tracking_uri=server.url,
            extra_args=["--metastore-dir", str(root / "metastore")],
        )
        try:
            import mlflow
            from mlflow.store.artifact.presigned_url_artifact_repo import PresignedUrlArtifactRepository
            from mlflow.utils.rest_utils import MlflowHostCreds

            creds = MlflowHostCreds(workspace.url, token=TOKEN)
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {TOKEN}"
            uc = f"{workspace.url}/api/2.0/mlflow/unity-catalog"
            session.post(f"{uc}/registered-models/create", json={"name": "dev.ml.bench"}).raise_for_status()
            client = mlflow.MlflowClient(tracking_uri=server.url)
            experiment = client.create_experiment("bench-uc-artifacts")

            results: dict[str, list[float]] = {
                k: [] for k in ("presigned_up", "presigned_down", "direct_up", "direct_down")
            }
            for round_ in range(args.rounds):
                run = client.create_run(experiment)
                answer = session.post(
                    f"{uc}/model-versions/create",
                    json={
                        "name": "dev.ml.bench",
                        "source": f"runs:/{run.info.run_id}/model",
                        "run_id": run.info.run_id,
                    },
                )
                answer.raise_for_status()
                version = answer.json()["model_version"]["version"]
                repo = PresignedUrlArtifactRepository(creds, "dev.ml.bench", version)
                results["presigned_up"].append(timed(repo.log_artifacts, str(payload)))
                out = root / f"presigned-{round_}"
                out.mkdir()
                results["presigned_down"].append(timed(repo.download_artifacts, "", dst_path=str(out)))
                assert (out / "part-0.bin").read_bytes() == (payload / "part-0.bin").read_bytes()

                results["direct_up"].append(timed(client.log_artifacts, run.info.run_id, str(payload)))
                out = root / f"direct-{round_}"
                out.mkdir()
                results["direct_down"].append(timed(client.download_artifacts, run.info.run_id, "", str(out)))
                assert (out / "part-0.bin").read_bytes() == (payload / "part-0.bin").read_bytes()
                client.set_terminated(run.info.run_id)

            figures = {
                "payload_mb": round(total_mb, 1),
                "files": args.files + 1,
                "rounds": args.rounds,
                "seconds": {k: [round(v, 3) for v in vs] for k, vs in results.items()},
                "median_mb_per_s": {
                    k: round(total_mb / statistics.median(vs), 1) for k, vs in results.items()
                },
            }
            save("uc_artifacts", figures)
        finally:
            workspace.stop()
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
