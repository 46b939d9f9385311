"""pysyncobj's own TCP transport with the harness' filter chains inside it, for :class:`~harness.tcp.TcpCluster`.

A TcpCluster runs pysyncobj's real ``TCPTransport`` (real sockets, connects,
reconnects and timeouts), yet the harness' filters must still see every Raft
message.  :class:`FilteredTCPTransport` is a subclass passed as
``transportClass=``: its ``send()`` hands a message to the node's send chain
(in :class:`~harness.tcp.network.TcpNetwork`) before it reaches the socket,
and its ``_onMessageReceived`` hands one read from a socket to the receive
chain; the network puts what passes on the socket or into pysyncobj with
:meth:`~FilteredTCPTransport.raw_send` and
:meth:`~FilteredTCPTransport.raw_deliver`.  It also refuses connections across
a cut and closes every socket at once when its node crashes.

:class:`NamedTCPNode` gives a node listening on ``HOST:port`` the Raft identity
``n1``, ``n2`` …, so node states have the same shape as the simulation's.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Collection, Dict, List, Optional

from pysyncobj.node import TCPNode
from pysyncobj.tcp_connection import CONNECTION_STATE
from pysyncobj.transport import TCPTransport

if TYPE_CHECKING:  # harness.tcp.network imports this module
    from harness.tcp.network import TcpNetwork

__all__ = ["HOST", "NamedTCPNode", "FilteredTCPTransport"]

#: Every node listens on this address only (``bindAddress``).
HOST = "127.0.0.1"


class NamedTCPNode(TCPNode):
    """A ``TCPNode`` reached at ``host:port`` whose Raft identity is the harness name (``n1``, ``n2`` …).

    pysyncobj keys votes, leaders, next/match indexes and the journal's
    ``votedFor`` by ``Node.id``; the transport uses ``address``.  Naming nodes
    this way keeps :class:`~harness.state.NodeState` (and so every checker and
    report) identical in shape to the simulated cluster's.
    """

    def __init__(self, name: str, address: str) -> None:
        super().__init__(address)
        self._id = name


class FilteredTCPTransport(TCPTransport):
    """pysyncobj's TCPTransport with the harness' filter chains on both sides of the socket."""

    def __init__(self, network: TcpNetwork, node_id: str, syncObj: Any, selfNode: Optional[TCPNode],
                 otherNodes: Collection[TCPNode]) -> None:
        self._net = network
        self.node_id = node_id
        self.alive = True
        self.epochs: Dict[str, int] = {}  # peer id -> id of the current connection (0: never connected)
        self.peers: Dict[str, TCPNode] = {n.id: n for n in otherNodes}
        self._incoming: List[Any] = []  # every accepted TcpConnection, so a crash can close them all
        super().__init__(syncObj, selfNode, otherNodes)

    # messages
    def send(self, node: TCPNode, message: Any) -> bool:
        if not self.alive or node not in self._connections \
                or self._connections[node].state != CONNECTION_STATE.CONNECTED:
            return False
        return self._net.on_send(self, node, message)

    def raw_send(self, node: TCPNode, message: Any) -> bool:
        """Put a message on the socket, past the filters."""
        return TCPTransport.send(self, node, message)

    def _onMessageReceived(self, node, message) -> None:
        if self.alive:
            self._net.on_receive(self, node, message)

    def raw_deliver(self, node: TCPNode, message: Any) -> None:
        """Hand a received message to pysyncobj, past the filters."""
        TCPTransport._onMessageReceived(self, node, message)

    # connections
    def _onNodeConnected(self, node) -> None:
        self.epochs[node.id] = self._net.next_epoch()
        super()._onNodeConnected(node)

    def _onNodeDisconnected(self, node) -> None:
        self.epochs[node.id] = self._net.next_epoch()
        super()._onNodeDisconnected(node)

    def connected(self, peer_id: str) -> bool:
        node = self.peers.get(peer_id)
        conn = self._connections.get(node) if node is not None else None
        return conn is not None and conn.state == CONNECTION_STATE.CONNECTED

    def _connectIfNecessarySingle(self, node):
        if not self.alive or not self._net.may_connect(self.node_id, node.id):
            return False
        return super()._connectIfNecessarySingle(node)

    def _onNewIncomingConnection(self, conn) -> None:
        self._incoming = [c for c in self._incoming if c.state != CONNECTION_STATE.DISCONNECTED]
        self._incoming.append(conn)
        super()._onNewIncomingConnection(conn)

    def _onIncomingMessageReceived(self, conn, message) -> None:
        # The first message on an accepted connection names the peer: refuse it while the link is cut.
        if isinstance(message, str) and message in self._nodeAddrToNode:
            peer = self._nodeAddrToNode[message]
            if not self.alive or not self._net.may_connect(self.node_id, peer.id):
                self._unknownConnections.discard(conn)
                conn.disconnect()
                return
        super()._onIncomingMessageReceived(conn, message)

    def disconnect_peer(self, peer_id: str) -> bool:
        """Close the connection to ``peer_id`` (pysyncobj sees it drop and reconnects when allowed)."""
        node = self.peers.get(peer_id)
        conn = self._connections.get(node) if node is not None else None
        if conn is None or conn.state == CONNECTION_STATE.DISCONNECTED:
            return False
        conn.disconnect()
        return True

    def tryGetReady(self) -> None:
        # SyncObj.__init__ (autoTick=False) calls this in a busy loop until the port is bound;
        # pysyncobj only retries every bindRetryTime, so wait a little instead of spinning.
        super().tryGetReady()
        if not self._ready:
            time.sleep(0.01)

    def kill(self) -> None:
        """A crash: close every socket (server, outgoing, accepted) without telling pysyncobj."""
        self.alive = False
        self.destroy()  # unsets the callbacks first, then closes connections and the listening socket
        for conn in self._incoming:
            conn.disconnect()
        self._incoming = []
