# riskudf: `make demo` runs the nightly job end to end on embedded defaults; `make test` tests.
SHELL := /bin/bash
ROOT := $(abspath .)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
# Every job goes through spark-submit with the conf's submit section (master, settings): the
# same command line whether CONF runs Spark locally or on a cluster.
RUN = $(PY) -m riskudf.lakehouse.submit --run --conf $(CONF)
DELTA_VERSION := 4.0.1
DERBY_VERSION := 10.16.1.1
JARS := jars/delta-spark_2.13-$(DELTA_VERSION).jar jars/delta-storage-$(DELTA_VERSION).jar \
  jars/derbynet-$(DERBY_VERSION).jar jars/derbyclient-$(DERBY_VERSION).jar jars/riskudf-bi.jar
MVN_COPY := mvn -q -B org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy -DoutputDirectory=jars
AS_OF ?= 2026-11-28
# The model trains on the 2023-11-28 and 2024-11-28 cohorts (TRAIN_DATES). The demo scores the
# 2025-11-28 cohort first, so that the 2026 run has a previous run (consecutive drift, migration)
# and a matured cohort to backtest that the model never saw.
DEMO_DATES ?= 2025-11-28 2026-11-28
# Outcome cohorts of the demo data (12-month defaults observed on each date).
DATA_COHORTS ?= 2023-11-28 2024-11-28 2025-11-28
# The candidates `make demo` trains: the probe alone keeps it within 25 minutes on 2 cores
# (full fine-tuning took 11.5 more over one cohort, about twice that over two); DEMO_CANDIDATES=
# trains every one of training.candidates.
DEMO_CANDIDATES ?= probe
SHIFT ?= 0
OBLIGORS ?= 5000
CONF ?= conf/local.yaml
MODE ?= full

export SPARK_CONF_DIR := $(ROOT)/conf/spark
export PYSPARK_PYTHON := $(PY)
export PYSPARK_DRIVER_PYTHON := $(PY)
export HF_HUB_OFFLINE := 1
export PATH := $(VENV)/bin:$(PATH)

.PHONY: install demo demo-cycle data training-set model promote models robustness quantize retrain baseline score reproduce monitor alert backfill submit-check test bench lint \
  clean-lakehouse metastore metastore-stop bi bi-user bi-stop leases lease-release cluster cluster-stop \
  history history-stop

install: $(VENV)/.installed $(JARS)

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	grep -q '# riskudf' $(VENV)/bin/activate || printf '%s\n' '# riskudf' \
	  'export SPARK_CONF_DIR="$(ROOT)/conf/spark"' \
	  'export PYSPARK_PYTHON="$(PY)"' 'export PYSPARK_DRIVER_PYTHON="$(PY)"' \
	  'export HF_HUB_OFFLINE=1' >> $(VENV)/bin/activate
	touch $@

jars/delta-spark_2.13-$(DELTA_VERSION).jar:
	$(MVN_COPY) -Dartifact=io.delta:delta-spark_2.13:$(DELTA_VERSION)

jars/delta-storage-$(DELTA_VERSION).jar:
	$(MVN_COPY) -Dartifact=io.delta:delta-storage:$(DELTA_VERSION)

# The metastore's Derby network server (same Derby as the pyspark wheel's): lets the nightly job
# and the BI server (a second JVM) share lakehouse/metastore_db. See riskudf/lakehouse/metastore.py.
jars/derbynet-$(DERBY_VERSION).jar:
	$(MVN_COPY) -Dartifact=org.apache.derby:derbynet:$(DERBY_VERSION)

jars/derbyclient-$(DERBY_VERSION).jar:
	$(MVN_COPY) -Dartifact=org.apache.derby:derbyclient:$(DERBY_VERSION)

# The BI server's password provider and outputs-only guard (riskudf/bi/jvm), compiled against the
# installed pyspark's jars with the JDK: see docs/bi.md.
jars/riskudf-bi.jar: $(wildcard riskudf/bi/jvm/*.java) $(VENV)/.installed
	rm -rf build/bi-classes && mkdir -p build/bi-classes jars
	javac --release 17 -nowarn -d build/bi-classes \
	  -cp "$$($(PY) -c 'import pyspark, os; print(os.path.dirname(pyspark.__file__))')/jars/*" \
	  riskudf/bi/jvm/*.java
	jar cf $@ -C build/bi-classes .

lakehouse:
	mkdir -p lakehouse

metastore: install lakehouse
	$(PY) -m riskudf.lakehouse.metastore start

metastore-stop:
	if test -x $(PY); then $(PY) -m riskudf.lakehouse.metastore stop; fi

data: install lakehouse metastore
	$(RUN) demo/make_data.py --obligors $(OBLIGORS) --shift $(SHIFT) --cohorts $(DATA_COHORTS)

# The labelled training set, assembled by the scoring job's own code: one cohort per date of
# TRAIN_DATES, labelled from risk.outcomes. KNOWLEDGE=observation reads each input as known at the
# end of its date (Delta time travel); the demo's tables were all written today, so the demo
# reads their current versions (record dates still bound the documents).
TRAIN_DATES ?= 2023-11-28 2024-11-28
KNOWLEDGE ?= current
training-set: install lakehouse metastore
	$(RUN) jobs/build_training_set.py --dates $(TRAIN_DATES) --knowledge $(KNOWLEDGE)

# Exit code 6 when TF-IDF + logistic regression beats the transformer on validation: the model is
# set aside at models/demo.set-aside; PUBLISH_ANYWAY=1 publishes it (recorded). REFERENCE_PD: a
# PD column of the training table reported beside the model's (the demo generator's own PD).
REFERENCE_PD ?= oracle_pd
# Each version lands in models/demo.versions/<version>, never replaced; models/demo links to the
# newest published. It becomes demo@challenger (ALIAS=...: another challenger's name);
# FIRST_CHAMPION=1 makes it demo@champion when the model has none yet (without the gate).
# CANDIDATES=probe: train only these of training.candidates (comma-separated names).
ALIAS ?=
CANDIDATES ?=
model: install lakehouse metastore
	$(RUN) jobs/train.py --train-table risk.training_documents --text-col text \
	  --label-col default_12m --output models/demo \
	  $(if $(REFERENCE_PD),--reference-pd-col $(REFERENCE_PD)) \
	  $(if $(PUBLISH_ANYWAY),--publish-if-benchmark-wins) \
	  $(if $(CANDIDATES),--candidates $(CANDIDATES)) $(if $(QUANTIZE),--quantize) \
	  $(if $(ALIAS),--alias $(ALIAS)) $(if $(FIRST_CHAMPION),--first-champion)

# make promote [VERSION=... | ROLLBACK=1] [BY=...] [OVERRIDE="reason"] [REASON=...]
# [COHORTS=2025-11-28]: the promotion gate (default: the challenger; ROLLBACK=1: the champion
# before the current one). Exit code 7 when a red test refuses it; the record is in
# risk.model_promotions, the report under lakehouse/reports/promotions.
BY ?= $(USER)
promote: install lakehouse metastore
	$(RUN) jobs/promote.py --model demo --by "$(or $(BY),unknown)" --knowledge $(KNOWLEDGE) \
	  $(if $(VERSION),--version $(VERSION)) $(if $(ROLLBACK),--rollback) \
	  $(if $(COHORTS),--cohorts $(COHORTS)) \
	  $(if $(REASON),--reason "$(REASON)") $(if $(OVERRIDE),--override-reason "$(OVERRIDE)")

# The robustness report of a model version (docs/governance.md, Robustness): the training job
# runs it after evaluation; this reruns it, e.g. under changed thresholds or for an older version.
MODEL ?= models/demo
robustness: install lakehouse metastore
	$(RUN) jobs/robustness.py --model $(MODEL) $(if $(VERSION),--version $(VERSION))

# The int8 version of a published fp32 version (docs/training.md, int8 versions): evaluated on its
# own splits beside its parent, no alias. After `make demo`: make quantize (about 2.5 minutes).
quantize: install lakehouse metastore
	$(RUN) jobs/quantize.py --model $(MODEL) $(if $(VERSION),--version $(VERSION))

# The demo model's alias changes and promotion decisions (model_aliases, model_promotions).
models: install lakehouse metastore
	$(RUN) jobs/models.py --model demo

# Retraining on matured outcomes: the training set of RETRAIN_DATES (cohorts whose outcomes have
# matured), trained and registered as demo@challenger. The gate tests a version on matured
# cohorts outside its own training set.
RETRAIN_DATES ?= $(TRAIN_DATES)
retrain: install lakehouse metastore
	$(MAKE) --no-print-directory training-set TRAIN_DATES="$(RETRAIN_DATES)"
	$(MAKE) --no-print-directory model ALIAS=challenger

# TF-IDF + logistic regression on the training job's split (the transformer's benchmark).
baseline: install lakehouse metastore
	$(RUN) jobs/baseline.py --train-table risk.training_documents

# INPUTS_AS_OF=2026-11-28T23:00:00: read the inputs as known then (Delta time travel).
KNOWN = $(if $(INPUTS_AS_OF),--inputs-as-of $(INPUTS_AS_OF))
score: install lakehouse metastore
	$(RUN) jobs/score_portfolio.py --as-of $(AS_OF) --mode $(MODE) $(KNOWN)

# make reproduce RUN_ID=... [INPUTS_AS_OF=...]: score a run's date again from its recorded input
# versions and compare with its stored rows (exit 5 when rows differ).
reproduce: install lakehouse metastore
	test -n "$(RUN_ID)" || { echo "usage: make reproduce RUN_ID=<run_id of score_runs>"; exit 2; }
	$(RUN) jobs/score_portfolio.py --reproduce $(RUN_ID) $(KNOWN)

# make monitor RUN_ID=...: monitor a published run again (after exit code 4, monitoring failed).
monitor: install lakehouse metastore
	test -n "$(RUN_ID)" || { echo "usage: make monitor RUN_ID=<run_id of score_runs>"; exit 2; }
	$(RUN) jobs/monitor.py --run-id $(RUN_ID)

# make alert ACTION=ack|close ALERT_ID=... BY=... [NOTE=...]: recorded in risk.alert_actions.
ACTION ?= ack
alert: install lakehouse metastore
	test -n "$(ALERT_ID)" -a -n "$(BY)" || { echo "usage: make alert ACTION=ack|close ALERT_ID=.. BY=.."; exit 2; }
	$(RUN) jobs/alerts.py $(ACTION) --alert-id $(ALERT_ID) --by "$(BY)" --note "$(NOTE)"

# make backfill FROM=2026-11-01 TO=2026-11-28 [MODE=incremental]: one Spark application.
backfill: install lakehouse metastore
	$(RUN) jobs/score_portfolio.py --from $(FROM) --to $(TO) --mode $(MODE) $(KNOWN)

# The run leases on as-of dates (scoring_locks): who holds which date, until when.
leases: install lakehouse metastore
	$(RUN) jobs/leases.py list

# make lease-release AS_OF=2026-11-28 REASON="driver host lost" [BY=name]: force-release a stuck
# date (recorded with the reason in scoring_lock_releases). AS_OF must be given, not defaulted.
ifneq ($(filter lease-release,$(MAKECMDGOALS)),)
ifeq ($(origin AS_OF),file)
$(error lease-release: give AS_OF=YYYY-MM-DD)
endif
ifeq ($(strip $(REASON)),)
$(error lease-release: give REASON="why")
endif
endif
lease-release: install lakehouse metastore
	$(RUN) jobs/leases.py release --as-of $(AS_OF) --reason "$$REASON" \
	  $(if $(BY),--by "$$BY")

# Prints the spark-submit command line of the nightly job for CONF (its submit section),
# without running anything: make submit-check CONF=conf/cluster.yaml MODE=incremental
submit-check:
	$(PY) -m riskudf.lakehouse.submit --conf $(CONF) jobs/score_portfolio.py --as-of $(AS_OF) --mode $(MODE)

# The champion/challenger cycle on the demo, after `make demo` (version 1 is demo@champion and
# has scored both dates): version 2 retrained on the matured 2025 cohort (the linear probe
# only), registered as demo@challenger; 2026-11-28 scored again with the challenger in shadow
# (shadow_scores, monitor_shadow, the report's last section); version 2 promoted through the
# gate (its report under lakehouse/reports/promotions); then rolled back to version 1 through
# the same gate. `make models` prints every step from the tables.
# A refusal (exit 7, a red test) is followed by the same promotion with a written override, so
# that the demo shows both records; a bank's validator would decide that from the report.
CYCLE_OVERRIDE ?= demo: walking the cycle after the refusal above; see its report
CYCLE_PROMOTE = $(RUN) jobs/promote.py --model demo --by demo-validator --knowledge $(KNOWLEDGE)
CYCLE_DATES ?= 2025-11-28
CYCLE_CANDIDATES ?= probe
demo-cycle: install lakehouse metastore
	$(MAKE) --no-print-directory retrain RETRAIN_DATES="$(CYCLE_DATES)" \
	  CANDIDATES=$(CYCLE_CANDIDATES) PUBLISH_ANYWAY=1
	$(MAKE) --no-print-directory score AS_OF=$(lastword $(DEMO_DATES))
	$(CYCLE_PROMOTE) --reason "demo: retrained on 2025" || { test $$? -eq 7 && \
	  $(CYCLE_PROMOTE) --reason "demo: retrained on 2025" --override-reason "$(CYCLE_OVERRIDE)"; }
	$(CYCLE_PROMOTE) --rollback --reason "demo: rollback drill" || { test $$? -eq 7 && \
	  $(CYCLE_PROMOTE) --rollback --reason "demo: rollback drill" \
	  --override-reason "$(CYCLE_OVERRIDE)"; }
	$(MAKE) --no-print-directory models

demo: install lakehouse
	$(MAKE) --no-print-directory data
	$(MAKE) --no-print-directory training-set
	# The demo publishes its model even if TF-IDF + LR wins (printed and recorded); `make model`
	# alone refuses then (exit 6 from the job).
	$(MAKE) --no-print-directory model PUBLISH_ANYWAY=1 FIRST_CHAMPION=1 \
	  CANDIDATES=$(DEMO_CANDIDATES)
	for day in $(DEMO_DATES); do $(MAKE) --no-print-directory score AS_OF=$$day || exit $$?; done

test: install
	$(PY) -m pytest -q

# Scoring throughput: raw torch loop, the Spark stage, predict_batch_udf and a transformers
# pipeline on the same BENCH_DOCS demo documents; then the Python workers' peak memory with
# BENCH_LONG_DOCS documents of 200,000 characters (see docs/measurements.md, `make bench`).
BENCH_DOCS ?= 600
BENCH_LONG_DOCS ?= 600
bench: install
	$(PY) benchmarks/bench.py --docs $(BENCH_DOCS) --long-docs $(BENCH_LONG_DOCS) --conf $(CONF) \
	  --workdir build/bench

# The BI endpoint: Spark Thrift Server (HiveServer2 protocol) on bi.port; Ctrl-C or bi-stop ends it.
bi: install lakehouse metastore
	$(RUN) jobs/serve_bi.py --pid-file lakehouse/bi.pid

# A BI user (name and password, PBKDF2 hash in bi.password_file): make bi-user BI_USER=analyst
bi-user: install lakehouse
	$(PY) -m riskudf.bi.users add "$(BI_USER)" --conf $(CONF)

bi-stop:
	if test -f lakehouse/bi.pid; then kill "$$(cat lakehouse/bi.pid)"; else echo "bi: not running"; fi

# A Spark standalone cluster on loopback from the installed pyspark: a master (spark://127.0.0.1:7077,
# web UI :8080) and two workers, each with its own executor JVM and one stand-in GPU address.
# Then: make score CONF=conf/standalone.yaml (or any job target with that CONF).
CLUSTER := $(PY) -m riskudf.lakehouse.cluster --state build/cluster
cluster: install lakehouse metastore
	$(CLUSTER) start

cluster-stop:
	if test -x $(PY); then $(CLUSTER) stop; fi

# Spark's history server over the jobs' event logs (spark.event_log_dir): http://127.0.0.1:18080
history: install
	$(CLUSTER) history-start --event-logs lakehouse/spark-events

history-stop:
	if test -x $(PY); then $(CLUSTER) history-stop; fi

lint: install
	$(PY) -m ruff check riskudf jobs tests benchmarks demo
	$(PY) -m mypy

clean-lakehouse: metastore-stop
	rm -rf lakehouse models
