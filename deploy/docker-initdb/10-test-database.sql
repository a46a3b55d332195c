-- Run once by the timescale/timescaledb image on an empty volume: the tests' database.
CREATE DATABASE test;
