"""scripts/e2e as a package: playground scaled out and in behind nginx on one
machine, under load, checked through Prometheus, the load's report and
OpenSearch. scripts/e2e says what the scenario does; main.py runs it.

  config     settings, ports and sizes of the short and full runs
  report     the log lines and the verdict table
  services   memcached, Kafka, OpenSearch (scripts/services), nginx and
             prometheus packages, the run's topics and its logs in OpenSearch
  nginx      the balancer in front of the instances
  instances  tcp/udp instances and the Prometheus that scrapes them
  clients    the TCP probes
  scenario   start, load, scale out, scale in
  checks     the load's report, UDP, logs, the final stop
  main       command line, time limit, teardown, exit code
"""
