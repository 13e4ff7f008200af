"use strict";
// The supervisor's dashboard (templates/supervisor.html): the live panel.
(function () {
  const site = location.search;  // ?site=…: the site an administrator chose
  const refresh = livePanel(document.getElementById("panel"), "/supervisor/panel" + site,
                            "/supervisor/feed" + site);
  setInterval(refresh, 30000);  // times in state keep moving even when nothing happens
})();
