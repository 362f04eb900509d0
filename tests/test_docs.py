"""Browser tests of the documentation: the static docs site and a notebook opened in JupyterLab, in headless
Chromium.

Needs Debian's `chromium` and `chromium-driver` (`make browser`) and selenium (the dev extras). Everything listens on
127.0.0.1 only, and every wait is bounded."""
import os, sys, time, shutil, signal, socket, secrets, threading, subprocess, functools, json, importlib.util
import urllib.request, urllib.error
from http.server import ThreadingHTTPServer, SimpleHTTPRequestHandler
import pytest, psutil
from fgia_nb.core import project_root
from fgia_nb.docs import build_docs, doc_notebooks, nb_title

ROOT = project_root()
STAGE = '00_data_clean'
CHROME_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                '--disable-background-networking', '--disable-component-update', '--disable-sync',
                '--disable-dev-shm-usage', '--window-size=1280,1000']

def _tools():
    "Paths of chromium and chromedriver and the selenium module, or a failure saying how to get them."
    chromium = shutil.which('chromium') or shutil.which('chromium-browser')
    driver = shutil.which('chromedriver')
    missing = [n for n, p in (('chromium', chromium), ('chromedriver', driver)) if not p]
    if missing: pytest.fail(f'{" and ".join(missing)} not found on PATH: run `make browser` '
                            f'(as root: apt-get install -y chromium chromium-driver)', pytrace=False)
    if importlib.util.find_spec('selenium') is None:
        pytest.fail('selenium is not installed: run `make test` (it is in the dev extras)', pytrace=False)
    return chromium, driver

@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    "Headless Chromium through chromedriver, with a fresh profile; quits at the end whatever happens."
    chromium, driver_path = _tools()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for f in CHROME_FLAGS + [f'--user-data-dir={tmp_path_factory.mktemp("chromium-profile")}']: opts.add_argument(f)
    d = webdriver.Chrome(options=opts, service=Service(executable_path=driver_path, log_output=subprocess.DEVNULL))
    try:
        d.set_page_load_timeout(30)
        d.set_script_timeout(30)
        yield d
    finally: d.quit()

class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *a): pass

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "The docs, built into a temporary folder and served on a free loopback port: `(folder, base url)`."
    out = build_docs(tmp_path_factory.mktemp('docs')/'_docs', quarto=False)
    srv = ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Quiet, directory=str(out)))
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try: yield out, f'http://127.0.0.1:{srv.server_address[1]}'
    finally:
        srv.shutdown()
        srv.server_close()
        th.join(10)

def _images(d):
    "`(number of img elements, number loaded with a non-zero natural width)` on the current page."
    return tuple(d.execute_script("const im = Array.from(document.images);"
                                  "return [im.length, im.filter(i => i.complete && i.naturalWidth > 0).length];"))

def _wait(d, cond, timeout, what):
    from selenium.webdriver.support.ui import WebDriverWait
    from selenium.common.exceptions import TimeoutException
    try: return WebDriverWait(d, timeout, poll_frequency=0.25).until(cond)
    except TimeoutException: pytest.fail(f'{what} within {timeout} s (page title {d.title!r})')

def test_docs_site(browser, site, tmp_path):
    "The index lists every notebook by title; following its link opens the stage page with its prose and plots."
    from selenium.webdriver.common.by import By
    out, url = site
    d = browser
    d.get(f'{url}/index.html')
    assert d.title == 'fgia_nb'
    assert d.find_element(By.TAG_NAME, 'h1').text.strip().startswith('fgia_nb')
    body = d.find_element(By.TAG_NAME, 'body').text
    assert 'Webly-supervised fine-grained recognition' in body and 'Two commands' in body
    assert '#| ' not in body, 'nbdev directives leaked into the index'
    # the index's "Notebooks" list: every notebook page by its title, with its subtitle
    for p in doc_notebooks()[1:]:
        title, sub = nb_title(p)
        links = d.find_elements(By.CSS_SELECTOR, f'.jp-MarkdownCell li a[href="{p.stem}.html"]')
        assert [a.text for a in links] == [title], f'index: no list link to {p.stem}.html titled {title!r}'
        assert sub.replace('`', '')[:30] in links[0].find_element(By.XPATH, '..').text, \
            f'index: subtitle of {p.stem} missing'
    # follow the link, as a reader would
    d.find_element(By.CSS_SELECTOR, f'.jp-MarkdownCell li a[href="{STAGE}.html"]').click()
    on_stage_page = lambda d: (d.current_url.endswith(f'/{STAGE}.html')
                               and d.execute_script('return document.readyState') == 'complete')
    _wait(d, on_stage_page, 30, f'the {STAGE} page did not load')
    title, sub = nb_title(ROOT/'nbs'/f'{STAGE}.ipynb')
    assert d.title == title
    assert d.find_element(By.TAG_NAME, 'h1').text.strip().startswith(title)
    body = d.find_element(By.TAG_NAME, 'body').text
    assert sub.split('`')[0][:30] in body
    h3s = [h.text.strip() for h in d.find_elements(By.TAG_NAME, 'h3')]
    assert 'clean_data' in h3s, 'no show_doc section for clean_data'
    assert '#| export' not in body and '#| hide' not in body, 'nbdev directives leaked into the page'
    n, loaded = _wait(d, lambda d: (lambda r: r if r[0] and r[0] == r[1] else False)(_images(d)), 20,
                      f'the plots of {STAGE} did not all load')
    assert n >= 2, f'{STAGE}: expected its plots, found {n} images'
    d.find_elements(By.CSS_SELECTOR, '.jp-OutputArea-output img')[0].location_once_scrolled_into_view
    d.save_screenshot(str(tmp_path/'stage.png'))
    assert (tmp_path/'stage.png').stat().st_size > 10_000
    # the same page from disk, without the server: images are embedded
    d.get((out/f'{STAGE}.html').as_uri())
    assert d.title == title and _images(d) == (n, n)

def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

def _get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r: return r.status, r.read()

@pytest.fixture
def jupyterlab(tmp_path):
    "JupyterLab on a free loopback port with a token, root dir the repo; shut down (kernels too) whatever happens."
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, 'JUPYTER_RUNTIME_DIR': str(tmp_path/'runtime'), 'JUPYTER_CONFIG_DIR': str(tmp_path/'config'),
           'JUPYTERLAB_WORKSPACES_DIR': str(tmp_path/'workspaces'),
           'JUPYTERLAB_SETTINGS_DIR': str(tmp_path/'settings')}
    for plugin, settings in (('docmanager-extension/plugin', {'autosave': False}),   # never write to the repo's nbs
                             ('apputils-extension/notification', {'fetchNews': 'false', 'checkForUpdates': False})):
        f = tmp_path/'settings'/f'@jupyterlab/{plugin}.jupyterlab-settings'
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(settings))
    log = open(tmp_path/'jupyterlab.log', 'wb')
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', '--ip=127.0.0.1', f'--port={port}', '--port-retries=0',
           f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={ROOT}', '--allow-root',
           '--LabApp.news_url=', '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate']
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    base = f'http://127.0.0.1:{port}'
    def _log(): return (tmp_path/'jupyterlab.log').read_text(errors='replace')[-3000:]
    try:
        t0 = time.time()
        while True:
            if proc.poll() is not None: pytest.fail(f'JupyterLab exited with {proc.returncode}:\n{_log()}')
            try:
                if _get(f'{base}/api/status?token={token}')[0] == 200: break
            except (urllib.error.URLError, OSError): pass
            if time.time() - t0 > 60: pytest.fail(f'JupyterLab did not answer on {base} within 60 s:\n{_log()}')
            time.sleep(0.5)
        yield base, token
    finally:
        try: started = psutil.Process(proc.pid).children(recursive=True)   # kernels run in their own sessions
        except psutil.Error: started = []
        try:   # the clean way: the server shuts its kernels down and exits
            urllib.request.urlopen(urllib.request.Request(f'{base}/api/shutdown', method='POST',
                                                          headers={'Authorization': f'token {token}'}), timeout=5)
        except Exception: pass
        try: proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try: proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for p in started:   # whatever the server left behind
            try: p.kill()
            except psutil.Error: pass
        log.close()

def test_jupyterlab_opens_stage_notebook(browser, jupyterlab, tmp_path):
    "`nbs/00_data_clean.ipynb` opened in JupyterLab renders: its title cell, its code cells and a plot."
    from selenium.webdriver.common.by import By
    base, token = jupyterlab
    d = browser
    d.get(f'{base}/lab/tree/nbs/{STAGE}.ipynb?reset&token={token}')
    title, _ = nb_title(ROOT/'nbs'/f'{STAGE}.ipynb')
    cells = json.loads((ROOT/'nbs'/f'{STAGE}.ipynb').read_text())['cells']
    code_src = [''.join(c['source']) for c in cells if c['cell_type'] == 'code']
    n_code, first_line = len(code_src), code_src[0].strip().splitlines()[0]
    cells_css = '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell'
    _wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, cells_css)) > 5, 60,
          f'JupyterLab did not render the cells of {STAGE}')
    h1 = _wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, '.jp-MarkdownCell .jp-RenderedMarkdown h1'), 30,
               'no rendered title cell')
    assert h1[0].text.strip().startswith(title), h1[0].text
    code = d.find_elements(By.CSS_SELECTOR, '.jp-Notebook .jp-CodeCell')   # Lab renders only the cells near the view
    assert 3 <= len(code) <= n_code, f'{len(code)} code cells in the DOM, the notebook has {n_code}'
    assert first_line in code[0].text, f'the first code cell does not show {first_line!r}: {code[0].text!r}'
    def _scrolled_to_image(d):   # Lab renders only the cells near the view: page down until an image shows
        imgs = d.find_elements(By.CSS_SELECTOR, '.jp-OutputArea-output img')
        if not imgs: d.execute_script("const s = document.querySelector("
                                      "'.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer');"
                                      "if (s) s.scrollTop += s.clientHeight;")
        return imgs
    imgs = _wait(d, _scrolled_to_image, 30, f'no output image in {STAGE}')
    imgs[0].location_once_scrolled_into_view
    _wait(d, lambda d: d.execute_script('return arguments[0].complete && arguments[0].naturalWidth', imgs[0]), 20,
          'the first output image did not load')
    d.save_screenshot(str(tmp_path/'lab.png'))
