"""twistd plugin for echod: ``twistd -n echod --port tcp:10000``."""

from twisted.application.service import ServiceMaker

Echod = ServiceMaker(
    "echod", "echod.tap", "An echo daemon that returns every byte.", "echod"
)
