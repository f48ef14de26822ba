/* SimGrid 3.32 platform XML (version 4.1) of a fabric: text only, no SimGrid.
 *
 * Each NVLink domain k is a zone "node-<k>" (routing Full) holding its GPUs'
 * hosts, a host per port host of its switches, a router per switch with an
 * uplink (the zone's gateway), its links, the routes between its GPUs (as
 * ep_fabric_route_of gives them; symmetrical, so the reverse swaps UP/DOWN),
 * and from every GPU, per port, a route to the port host of the port's switch
 * (port link UP, pad UP) and, where that switch has an uplink, to the switch
 * (port link UP). With several domains the zones sit in a Floyd zone "world"
 * with a zone "core" holding the scale-out switches as routers, the scale-out
 * links, and per uplink a zoneRoute from the domain's zone to the core. */
#ifndef EP_SIMGRID_XML_H
#define EP_SIMGRID_XML_H

#include <stdio.h>

#include "ep_fabric.h"

/* Writes the platform of f to out. EP_ERR_INVALID for a NULL or empty fabric
 * (nothing written), EP_ERR_UNSUPPORTED for a switch tree deeper than domain
 * switches under scale-out roots (nothing written), ep_fabric_route_of's status
 * when the tables hold no route between two GPUs of a domain, EP_ERR_IO when a
 * write fails. */
ep_status ep_fabric_write_simgrid_xml(const ep_fabric *f, FILE *out);

#endif
