"""Spark settings every launcher of the pipeline passes: `pipeline.session` (mlpipe starting Spark
itself), `scripts/submit` and the Airflow DAG (`deploy/airflow/`). Plain constants with no imports,
so the DAG can read this file from the project without installing the package.
"""

# Delta Lake's SQL extension and catalog.
DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
