"""A local multi-node Ray cluster in a process of its own, driven over stdin and stdout
(``tests/test_ray.py``): the test process never loads Ray, so its forked pool workers inherit no
gRPC threads of a cluster client.

Started as ``python tests/ray_cluster.py``: a head node without CPUs and two worker nodes of one
CPU each (``ray.cluster_utils.Cluster``: each node its own raylet and worker processes). After
start-up and after each command it prints one JSON line: the cluster's address and the process
id of each worker node's raylet. Commands, one per line: ``kill <raylet pid>`` (SIGKILL that node:
its raylet and its workers), ``add`` (one more worker node), ``quit`` (or the end of stdin).
"""

from __future__ import annotations

import json
import sys

from ray.cluster_utils import Cluster

# a node that stops answering is declared dead within about 2 s (Ray's default: about 15 s)
FAST_FAILURE_DETECTION = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                          "health_check_timeout_ms": 500, "health_check_failure_threshold": 3}


def raylet_pid(node) -> int:
    return node.all_processes["raylet"][0].process.pid


def report(cluster: Cluster) -> None:
    print(json.dumps({"address": cluster.address, "raylets": sorted(raylet_pid(n) for n in cluster.worker_nodes)}),
          flush=True)


def main() -> None:
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "_system_config": FAST_FAILURE_DETECTION})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        report(cluster)
        for line in sys.stdin:
            command, *args = line.split()
            if command == "kill":
                (node,) = [n for n in cluster.worker_nodes if raylet_pid(n) == int(args[0])]
                cluster.remove_node(node, allow_graceful=False)
            elif command == "add":
                cluster.add_node(num_cpus=1)
                cluster.wait_for_nodes()
            elif command == "quit":
                break
            report(cluster)
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
