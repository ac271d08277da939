# syntax=docker/dockerfile:1
# binance-etl: Airflow 3 (api-server, scheduler, dag-processor, triggerer), the Spark job, the
# streamer and the dashboard in one image. Python 3.11 + Java 17 (Spark 4), dependencies from requirements.txt,
# which is exported from uv.lock (`make requirements`), so the image has the locked versions.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps tini \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s "$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" /opt/java
ENV JAVA_HOME=/opt/java

# Airflow's conventional uid; AIRFLOW_HOME holds logs and the generated admin password.
RUN useradd --uid 50000 --gid 0 --create-home --home-dir /opt/airflow airflow

WORKDIR /opt/binance-etl
COPY requirements.txt ./
RUN pip install -r requirements.txt

# The project itself as a wheel (no PYTHONPATH): built from a copy of the sources outside the
# working directory, which is then removed, so every command and the DAG import the installed
# packages, as in a user's own Airflow.
COPY pyproject.toml README.md /tmp/src/
COPY binance_etl /tmp/src/binance_etl
COPY etl /tmp/src/etl
COPY live /tmp/src/live
COPY dashboard /tmp/src/dashboard
RUN pip install --no-deps /tmp/src && rm -rf /tmp/src
COPY airflow.cfg stream.py ./
COPY dags ./dags

# No SPARK_LOCAL_IP here: etl/spark.py keeps a local[*] driver on the loopback itself, and with
# SPARK_MASTER=spark://spark-master:7077 the driver must listen on the container's own address so
# that executors in the spark-worker container can call it back.
ENV AIRFLOW_HOME=/opt/airflow \
    AIRFLOW_CONFIG=/opt/binance-etl/airflow.cfg

# /var/lib/binance-live: the live query's checkpoint volume (docker-compose.yaml), mounted in
# the spark-connect and live containers; a new named volume takes this folder's owner.
RUN mkdir -p .local/jvm /var/lib/binance-live \
    && chown airflow:0 .local/jvm /var/lib/binance-live

USER airflow
# Fetch the PostgreSQL JDBC driver into the ivy cache now, so tasks need no network for it.
RUN python -c "from etl.spark import build_session; build_session('local[1]').stop()"
# The JVM class-data archive the Spark driver maps at start (etl/jvmcache.py): ~5 s less per
# session start. Keyed to this image's JDK and pyspark; SPARK_CDS=off disables its use.
RUN python -m etl.jvmcache

EXPOSE 8080 8050
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["airflow", "api-server", "--port", "8080"]
