/**
 * @file snapshot_pipeline.h
 * @brief The pipeline whose task snapshots fuzz_snapshot restores, shared with
 *        gen_seeds (which writes the snapshot seeds by running it): every
 *        stateful operator (tumbling, sliding and session windows, kmeans, arima) plus filter and map.
 */
#ifndef WEIR_FUZZ_SNAPSHOT_PIPELINE_H
#define WEIR_FUZZ_SNAPSHOT_PIPELINE_H

static const char FUZZ_SNAPSHOT_PIPELINE[] =
    "pipeline: fuzz-snapshot\n"
    "source:\n"
    "  fields: {sensor_id: string, ts: long, temperature: double, humidity: double}\n"
    "  event_time: ts\n"
    "  watermark: {max_out_of_orderness: 1s}\n"
    "nodes:\n"
    "  - {name: valid, op: filter, where: 'temperature > -40'}\n"
    "  - {name: enriched, op: map, input: valid, set: {temp_f: 'temperature * 9 / 5 + 32'}}\n"
    "  - {name: per_5s, op: window, input: enriched, key: sensor_id, type: tumbling, size: 5s,\n"
    "     aggregate: {n: count(), mean_temp: mean(temperature), max_temp: max(temperature),\n"
    "                 mean_hum: mean(humidity)}}\n"
    "  - {name: regimes, op: kmeans, input: per_5s, features: [mean_temp, max_temp, mean_hum], k: 2,\n"
    "     init_size: 3}\n"
    "  - {name: forecast, op: arima, input: per_5s, key: sensor_id, value: mean_temp, order: [1, 0, 0],\n"
    "     horizon: 2, min_points: 5, refit_every: 2}\n"
    "  - {name: sliding, op: window, key: sensor_id, type: sliding, size: 6s, slide: 2s, allowed_lateness: 2s,\n"
    "     emit_early: true, count_nulls: true,\n"
    "     aggregate: {n: count(), s: sum(humidity), sd: stddev(temperature), f: first(temperature), l: last(humidity), "
    "v: variance(humidity)}}\n"
    "  - {name: sessions, op: window, key: sensor_id, type: session, gap: 3s, max_keys: 4,\n"
    "     aggregate: {n: count(humidity), hi: max(temperature)}}\n"
    "sinks:\n"
    "  - {input: per_5s, kafka: {topic: windows}}\n"
    "  - {input: regimes, kafka: {topic: regimes}}\n"
    "  - {input: regimes.centroids, kafka: {topic: centroids}}\n"
    "  - {input: forecast, kafka: {topic: forecasts}}\n"
    "  - {input: sliding, kafka: {topic: sliding}}\n"
    "  - {input: sessions, kafka: {topic: sessions}}\n";

#endif
