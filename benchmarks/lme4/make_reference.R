#!/usr/bin/env Rscript
## Reference fits from R's lme4 for checking pyro_lmmvae's linear mixed model.
##
## Usage (from the repository root):
##     Rscript benchmarks/lme4/make_reference.R
##
## For each data set this writes
##     benchmarks/lme4/data/<name>.csv        (z-scored columns + *_raw columns)
##     benchmarks/lme4/reference/<name>.json  (lme4 ML fit: fixed effects, SEs,
##                                             random-effect SDs/correlations,
##                                             sigma, logLik, BLUPs, ...)
## See benchmarks/lme4/README.md for the meaning of every field.

suppressPackageStartupMessages({
  library(lme4)
  library(nlme, include.only = character(0))  # only for the data sets
  library(jsonlite)
})

## ---------------------------------------------------------------- paths ----
script_dir <- local({
  arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
  if (length(arg)) dirname(normalizePath(sub("^--file=", "", arg[1])))
  else file.path("benchmarks", "lme4")
})
data_dir <- file.path(script_dir, "data")
ref_dir <- file.path(script_dir, "reference")
dir.create(data_dir, showWarnings = FALSE, recursive = TRUE)
dir.create(ref_dir, showWarnings = FALSE, recursive = TRUE)

## Optimiser settings.  lme4's default optimiser for lmer() is "nloptwrap"
## (NLopt BOBYQA, xtol_abs = ftol_abs = 1e-8 by default; see ?lmerControl).
## The reference fit uses the same optimiser with much tighter tolerances so
## that the numbers are as close to the exact ML optimum as lme4 gets; a fit
## with lme4's default control is kept as a cross-check (max |difference| is
## recorded in the JSON under "cross_check").
opt_ctrl <- list(xtol_abs = 1e-12, ftol_abs = 1e-14,
                 xtol_rel = 1e-12, ftol_rel = 1e-14, maxeval = 100000)
ctrl <- lmerControl(optimizer = "nloptwrap", optCtrl = opt_ctrl,
                    calc.derivs = TRUE)

## Group labels are sorted in the C locale so that the result does not depend
## on the locale R runs in.
c_sort <- function(x) sort(unique(as.character(x)), method = "radix")

zscore <- function(x) {
  m <- mean(x); s <- sd(x)                      # sd(): n - 1 denominator
  list(z = (x - m) / s, mean = m, sd = s)
}

## ------------------------------------------------------------ data sets ----
## Each entry: how to build the data frame, which columns to z-score, which
## factors to keep, the formula, and the data source.
specs <- list(
  sleepstudy = list(
    source = list(package = "lme4", dataset = "sleepstudy"),
    raw = function() lme4::sleepstudy,
    zcols = c("Reaction", "Days"),
    factors = list(),
    group = "Subject",
    other = character(0),
    formula = "Reaction ~ Days + (1 + Days | Subject)"),
  sleepstudy_uncorrelated = list(
    source = list(package = "lme4", dataset = "sleepstudy"),
    raw = function() lme4::sleepstudy,
    zcols = c("Reaction", "Days"),
    factors = list(),
    group = "Subject",
    other = character(0),
    formula = "Reaction ~ Days + (1 + Days || Subject)"),
  Orthodont = list(
    source = list(package = "nlme", dataset = "Orthodont"),
    raw = function() as.data.frame(nlme::Orthodont),
    zcols = c("distance", "age"),
    factors = list(Sex = NULL),       # keep R's level order (Male, Female)
    group = "Subject",
    other = character(0),
    formula = "distance ~ age + Sex + (1 + age | Subject)"),
  Oxboys = list(
    source = list(package = "nlme", dataset = "Oxboys"),
    raw = function() as.data.frame(nlme::Oxboys),
    zcols = c("height", "age"),
    factors = list(),
    group = "Subject",
    other = c("Occasion"),            # not used by the model; kept as string
    formula = "height ~ age + (1 + age | Subject)")
)

pkg_version <- function(p) as.character(utils::packageVersion(p))

## Named list keyed by the names of x (jsonlite writes it as an object).
named <- function(x) as.list(setNames(unname(x), names(x)))

matrix_to_nested <- function(m) {
  out <- lapply(rownames(m), function(r)
    named(setNames(as.vector(m[r, , drop = FALSE]), colnames(m))))
  setNames(out, rownames(m))
}

fit_summary <- function(fit) {
  vc <- VarCorr(fit)
  list(fixef = fixef(fit),
       se = sqrt(diag(as.matrix(vcov(fit)))),
       sds = unlist(lapply(vc, function(v) attr(v, "stddev"))),
       sigma = sigma(fit),
       loglik = as.numeric(logLik(fit)),
       theta = getME(fit, "theta"))
}

run_one <- function(name, spec) {
  cat("==", name, "==\n")
  raw <- spec$raw()
  n <- nrow(raw)

  ## ---- preprocessing -------------------------------------------------
  d <- data.frame(row.names = seq_len(n))
  zinfo <- list()
  for (col in spec$zcols) {
    zs <- zscore(as.numeric(raw[[col]]))
    d[[col]] <- zs$z
    zinfo[[col]] <- list(mean = zs$mean, sd = zs$sd)
  }
  factor_info <- list()
  for (col in names(spec$factors)) {
    ## plain (unordered) factor with R's original level order
    lev <- levels(raw[[col]])
    d[[col]] <- factor(as.character(raw[[col]]), levels = lev)
    factor_info[[col]] <- list(levels = lev, contrasts = "contr.treatment",
                               reference_level = lev[1])
  }
  labels <- c_sort(raw[[spec$group]])
  d[[spec$group]] <- factor(as.character(raw[[spec$group]]), levels = labels)
  for (col in spec$other) d[[col]] <- as.character(raw[[col]])
  for (col in spec$zcols) d[[paste0(col, "_raw")]] <- as.numeric(raw[[col]])

  csv_path <- file.path(data_dir, paste0(name, ".csv"))
  ## write.csv uses up to 15 significant digits; group column written as
  ## plain strings (quoted).
  d_out <- d
  d_out[[spec$group]] <- as.character(d_out[[spec$group]])
  for (col in names(spec$factors)) d_out[[col]] <- as.character(d_out[[col]])
  write.csv(d_out, csv_path, row.names = FALSE)

  ## ---- fit -----------------------------------------------------------
  form <- as.formula(spec$formula)
  warns <- character(0)
  fit <- withCallingHandlers(
    lmer(form, data = d, REML = FALSE, control = ctrl),
    warning = function(w) {
      warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning")
    })
  warns_default <- character(0)
  fit_default <- withCallingHandlers(
    lmer(form, data = d, REML = FALSE),
    warning = function(w) {
      warns_default <<- c(warns_default, conditionMessage(w))
      invokeRestart("muffleWarning")
    })

  ## ---- fixed effects -------------------------------------------------
  V <- as.matrix(vcov(fit))
  fe <- fixef(fit)
  se <- sqrt(diag(V))
  fixed <- lapply(names(fe), function(k)
    list(estimate = unname(fe[k]), se = unname(se[k])))
  names(fixed) <- names(fe)

  ## ---- random effects ------------------------------------------------
  vc <- VarCorr(fit)
  ## names(cnms) are the grouping factors of the random-effect terms (VarCorr
  ## makes its names unique, e.g. "Subject", "Subject.1" for `||`).
  gf <- names(getME(fit, "cnms"))
  components <- lapply(seq_along(vc), function(k) {
    g <- names(vc)[k]
    v <- vc[[k]]
    sds <- attr(v, "stddev")
    corr <- attr(v, "correlation")
    cov <- as.matrix(v); attr(cov, "stddev") <- NULL
    attr(cov, "correlation") <- NULL
    pairs <- list()
    if (length(sds) > 1) for (i in 1:(length(sds) - 1))
      for (j in (i + 1):length(sds))
        pairs[[paste(names(sds)[i], names(sds)[j], sep = ",")]] <- corr[i, j]
    list(name = g, grouping_factor = gf[k],
         terms = I(names(sds)), sd = named(sds),
         correlation = if (length(pairs)) pairs else NULL,
         covariance = matrix_to_nested(cov))
  })
  names(components) <- NULL
  ## flat per-term SDs / correlations for the (single) grouping factor
  sd_flat <- list(); corr_flat <- list()
  for (cmp in components) {
    for (t in names(cmp$sd)) sd_flat[[t]] <- cmp$sd[[t]]
    for (p in names(cmp$correlation)) corr_flat[[p]] <- cmp$correlation[[p]]
  }
  correlated <- length(corr_flat) > 0

  ## ---- conditional modes (BLUPs) -------------------------------------
  re <- as.data.frame(ranef(fit, condVar = TRUE))
  re$grp <- as.character(re$grp); re$term <- as.character(re$term)
  blup <- list(); condsd <- list()
  for (g in labels) {
    rows <- re[re$grp == g, ]
    blup[[g]] <- setNames(as.list(rows$condval), rows$term)
    condsd[[g]] <- setNames(as.list(rows$condsd), rows$term)
  }

  ## ---- cross-check against lme4's default optimiser control ----------
  s1 <- fit_summary(fit); s0 <- fit_summary(fit_default)
  diffs <- mapply(function(a, b) max(abs(a - b)), s1, s0)
  re0 <- as.data.frame(ranef(fit_default))
  key <- function(r) paste(r$grp, r$term)
  diffs["ranef"] <- max(abs(re$condval[match(key(re0), key(re))] -
                            re0$condval))

  conv <- fit@optinfo$conv
  out <- list(
    name = name,
    formula = spec$formula,
    REML = FALSE,
    source = c(spec$source, list(package_version = pkg_version(spec$source$package))),
    versions = list(R = R.version.string, lme4 = pkg_version("lme4"),
                    Matrix = pkg_version("Matrix"), nlme = pkg_version("nlme"),
                    jsonlite = pkg_version("jsonlite")),
    created_utc = format(Sys.time(), "%Y-%m-%dT%H:%M:%SZ", tz = "UTC"),
    data_csv = file.path("data", paste0(name, ".csv")),
    n_obs = n,
    n_groups = length(labels),
    columns = I(names(d_out)),
    group_column = spec$group,
    group_labels = I(labels),
    preprocessing = list(
      description = paste0(
        "Columns ", paste(spec$zcols, collapse = ", "),
        " z-scored as (x - mean(x)) / sd(x) with R's mean() and sd() ",
        "(n - 1 denominator) over all ", n, " rows; z-scored values are ",
        "stored under the original names and the untouched values under ",
        "<name>_raw. ", spec$group, " written as plain strings",
        if (length(names(spec$factors)))
          paste0("; ", paste(names(spec$factors), collapse = ", "),
                 " kept as an unordered factor with R's level order ",
                 "(treatment contrasts, first level is the reference)")
        else "",
        ". The model is fit to the z-scored columns."),
      zscore = zinfo,
      factors = if (length(factor_info)) factor_info else NULL,
      row_order = "as in the source data set"),
    optimizer = list(name = fit@optinfo$optimizer,
                     control = opt_ctrl,
                     feval = fit@optinfo$feval,
                     message = fit@optinfo$message),
    fixed_effects = fixed,
    fixed_effects_vcov = matrix_to_nested(V),
    random_effects = list(
      grouping_factor = spec$group,
      correlated = correlated,
      sd = sd_flat,
      correlation = if (correlated) corr_flat else NULL,
      components = components,
      theta = named(getME(fit, "theta"))),
    sigma = sigma(fit),
    logLik = as.numeric(logLik(fit)),
    df = attr(logLik(fit), "df"),
    deviance = deviance(fit),
    AIC = AIC(fit),
    BIC = BIC(fit),
    ranef = blup,
    ranef_condsd = condsd,
    diagnostics = list(
      singular = isSingular(fit),
      warnings = I(warns),
      lme4_messages = I(as.character(unlist(conv$lme4$messages))),
      optimizer_code = conv$opt,
      max_abs_gradient = if (!is.null(fit@optinfo$derivs))
        max(abs(fit@optinfo$derivs$gradient)) else NULL),
    cross_check = list(
      description = paste(
        "max |reference - default-control fit| for each quantity; the",
        "default fit uses lmer(..., REML = FALSE) with lmerControl() defaults"),
      default_fit_warnings = I(warns_default),
      default_fit_singular = isSingular(fit_default),
      max_abs_diff = as.list(diffs))
  )
  json_path <- file.path(ref_dir, paste0(name, ".json"))
  writeLines(toJSON(out, auto_unbox = TRUE, digits = I(15), pretty = TRUE,
                    null = "null", na = "null"), json_path)

  print(summary(fit), correlation = FALSE)
  cat("singular:", isSingular(fit), " warnings:", length(warns), "\n")
  cat("cross-check max abs diffs:\n"); print(diffs)
  cat("wrote", csv_path, "and", json_path, "\n\n")
  invisible(out)
}

for (nm in names(specs)) run_one(nm, specs[[nm]])
