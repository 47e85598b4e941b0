"""The campaign view: recent training runs and their trends, inside the Airflow UI."""
