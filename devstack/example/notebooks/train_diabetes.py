# Databricks notebook source
# Trains a small regression model on scikit-learn's diabetes data and logs it to MLflow.
#
# Parameters (widgets):
#   experiment  MLflow experiment path (required)
#   alpha       Ridge regularisation strength (float, default 1.0)
#
# Exits with JSON: {"run_id", "rmse", "r2", "rows"}.

dbutils.widgets.text("experiment", "")
dbutils.widgets.text("alpha", "1.0")

experiment = dbutils.widgets.get("experiment")
assert experiment, "widget 'experiment' is required: pass an MLflow experiment path, e.g. /Shared/devstack-example"
alpha = float(dbutils.widgets.get("alpha"))

# COMMAND ----------

import json

import mlflow
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

X, y = load_diabetes(return_X_y=True, as_frame=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=42)

# COMMAND ----------

mlflow.set_experiment(experiment)
with mlflow.start_run(run_name=f"ridge alpha={alpha}") as run:
    model = Ridge(alpha=alpha).fit(X_train, y_train)
    predictions = model.predict(X_test)
    rmse = float(mean_squared_error(y_test, predictions) ** 0.5)
    r2 = float(r2_score(y_test, predictions))
    mlflow.log_param("alpha", alpha)
    mlflow.log_metrics({"rmse": rmse, "r2": r2})
    mlflow.sklearn.log_model(model, name="model", input_example=X_test.head(3))
    print(f"rmse={rmse:.2f} r2={r2:.3f}")

dbutils.notebook.exit(json.dumps({"run_id": run.info.run_id, "rmse": rmse, "r2": r2, "rows": len(X)}))
