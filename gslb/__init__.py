"""gslb: an authoritative GSLB DNS server for multi-CDN hostnames."""

__version__ = "0.1.0"

GEOIP_ATTRIBUTION = "IP Geolocation by DB-IP (https://db-ip.com), CC BY 4.0, modified (reduced)"
