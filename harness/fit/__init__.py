"""The fitting stage: laws fitted to runs, and analyses of sweeps. Nothing is imported here.

| module | job |
|---|---|
| cli (`python -m harness.fit`) | the command line: subcommands curve, scaling, isoflop, envelope, steplaw, powerlines, critbatch |
| law_fit | curve / scaling: fit a registered law to files, write params, metrics, predictions, plots |
| fit_checks | refuse (exit 3) or, with --allow-unconverged, warn: underdetermined, unconverged, on a bound, implausible predictions |
| extrapolation | robust-fit settings chosen by extrapolation inside the fit runs (`scaling --select-settings`) |
| bootstrap_starts | scaling-law bootstrap over (N, D) cells, each refit from several starts |
| analyses | isoflop / envelope / steplaw / powerlines / critbatch: CSV in, JSON out |
| registry | CLI name -> law factory (lazy) |
| laws/ | the `Law` contract (base) and the laws: curve, mpl, lr_noise, final_loss, downstream, journey, critical_batch |
| curve_predict | schedule config -> per-step LR, predicted curves of untrained schedules, calibrated bands |
| fitter | multi-start robust fit of any `Law`, metrics, bootstrap |
| io | validated readers of curve files and scaling tables |
| powerlaw | `PowerLaw`: y = c * prod x_i^k_i by OLS in log space, with bootstrap intervals |
| isoflop | Chinchilla Approaches 1 and 2 |
| hyperparams | Step Law, Power Lines, critical batch size (power-law fits, not `Law`s); grid validation |
| plots | PNGs of a fit |
| data_dir | where public data from other projects is read from (docs/DATA.md) |
"""
