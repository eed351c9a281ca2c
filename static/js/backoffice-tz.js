// The back office shows dates in the staff member's time zone: tell the server which one this browser uses.
// A static file, not an inline script: the Content-Security-Policy allows no inline script.
(function () {
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && document.cookie.indexOf("bo_tz=" + zone) === -1) {
      document.cookie = "bo_tz=" + zone + "; path=/admin/; max-age=31536000; SameSite=Lax";
    }
  } catch (e) { /* old browser: dates stay in UTC */ }
})();
