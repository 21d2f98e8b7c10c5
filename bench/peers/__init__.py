"""Side-by-side benchmark against Node-RED on the same MQTT feed."""
