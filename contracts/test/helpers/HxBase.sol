// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Test} from "forge-std/Test.sol";

import {ClearingHouse} from "../../src/ClearingHouse.sol";
import {InsuranceFund} from "../../src/InsuranceFund.sol";
import {Vault} from "../../src/Vault.sol";
import {HxTimelock} from "../../src/governance/HxTimelock.sol";
import {SumTree} from "../../src/libraries/SumTree.sol";
import {TestToken} from "../../src/test-tokens/TestToken.sol";
import {TreeBuilder} from "./TreeBuilder.sol";

/// @notice Deploys the system exactly as settlement/deploy.py does (timelock, then vault and fund pointing at
///         the precomputed ClearingHouse address, then the ClearingHouse) and keeps a tiny model of the
///         engine: balances per (token, account), the insurance fund, and the batch's pending effects.
abstract contract HxBase is Test {
    using TreeBuilder for TreeBuilder.Tree;

    uint256 internal constant FREEZE_PERIOD = 3 days;
    uint256 internal constant TIMELOCK_DELAY = 7 days;

    HxTimelock internal timelock;
    Vault internal vault;
    InsuranceFund internal fund;
    ClearingHouse internal ch;
    TestToken internal usdc;
    TestToken internal weth;
    TestToken internal wbtc;

    address internal governor = makeAddr("governor");
    address internal operator = makeAddr("operator");
    address internal guardian = makeAddr("guardian");
    address internal alice = makeAddr("alice");
    address internal bob = makeAddr("bob");
    address internal carol = makeAddr("carol");
    address internal dave = makeAddr("dave");

    address[] internal actors;
    address[] internal tokens;

    // engine model
    mapping(address token => mapping(address account => uint256)) internal bal;
    mapping(address token => uint256) internal fundModel;
    ClearingHouse.Withdrawal[] internal pendingW;
    ClearingHouse.InsuranceMove[] internal pendingI;
    uint64 internal nextWithdrawalId = 1;
    uint256 private _salt;

    function setUp() public virtual {
        usdc = new TestToken("USD Coin (test)", "USDC", 6);
        weth = new TestToken("Wrapped Ether (test)", "WETH", 18);
        wbtc = new TestToken("Wrapped Bitcoin (test)", "WBTC", 8);
        tokens.push(address(usdc));
        tokens.push(address(weth));
        tokens.push(address(wbtc));
        actors.push(alice);
        actors.push(bob);
        actors.push(carol);
        actors.push(dave);
        _deploy(tokens);
    }

    function _deploy(address[] memory listed) internal {
        timelock = new HxTimelock(TIMELOCK_DELAY, governor);
        address predicted = vm.computeCreateAddress(address(this), vm.getNonce(address(this)) + 2);
        vault = new Vault(predicted, address(timelock), guardian, listed);
        fund = new InsuranceFund(predicted, address(vault), address(timelock));
        ch = new ClearingHouse(vault, fund, address(timelock), operator, guardian, FREEZE_PERIOD);
        assertEq(address(ch), predicted, "predicted ClearingHouse address");
    }

    // ------------------------------------------------------------------ users

    function _depositUncredited(address who, address token, uint256 amount) internal returns (uint48 id) {
        TestToken(token).mint(who, amount);
        vm.startPrank(who);
        TestToken(token).approve(address(vault), amount);
        id = vault.deposit(token, amount, who);
        vm.stopPrank();
    }

    /// Deposit and credit it in the model (the next batch credits every deposit made so far).
    function _deposit(address who, address token, uint256 amount) internal returns (uint48 id) {
        id = _depositUncredited(who, token, amount);
        bal[token][who] += amount;
    }

    // ------------------------------------------------------------------ engine model

    function _withdraw(address who, address token, uint256 amount) internal {
        bal[token][who] -= amount;
        pendingW.push(ClearingHouse.Withdrawal(nextWithdrawalId++, who, token, amount));
    }

    function _feeToFund(address who, address token, uint256 amount) internal {
        bal[token][who] -= amount;
        fundModel[token] += amount;
        pendingI.push(ClearingHouse.InsuranceMove(token, int256(amount)));
    }

    function _coverFromFund(address who, address token, uint256 amount) internal {
        bal[token][who] += amount;
        fundModel[token] -= amount;
        pendingI.push(ClearingHouse.InsuranceMove(token, -int256(amount)));
    }

    function _amounts(address token) internal view returns (uint256[] memory a) {
        a = new uint256[](actors.length);
        for (uint256 i; i < actors.length; ++i) {
            a[i] = bal[token][actors[i]];
        }
    }

    function _tree(address token) internal view returns (TreeBuilder.Tree memory) {
        return TreeBuilder.build(token, actors, _amounts(token));
    }

    function _assets() internal view returns (ClearingHouse.AssetCommitment[] memory a) {
        address[] memory listed = vault.listedTokens();
        a = new ClearingHouse.AssetCommitment[](listed.length);
        for (uint256 i; i < listed.length; ++i) {
            TreeBuilder.Tree memory t = _tree(listed[i]);
            a[i] = ClearingHouse.AssetCommitment(listed[i], t.root(), t.total());
        }
    }

    function _batch() internal view returns (ClearingHouse.Batch memory b) {
        b.batchId = ch.lastBatchId() + 1;
        b.prevBatchHash = ch.lastBatchHash();
        b.lastCreditedDepositId = vault.depositCount();
        b.assets = _assets();
        b.withdrawals = pendingW;
        b.insuranceMoves = pendingI;
        b.data = abi.encodePacked("hx batch ", vm.toString(uint256(b.batchId)));
    }

    function _submit(ClearingHouse.Batch memory b) internal returns (bytes32 h) {
        vm.prank(operator);
        h = ch.submitBatch(b);
        delete pendingW;
        delete pendingI;
    }

    function _submit() internal returns (bytes32) {
        return _submit(_batch());
    }

    function _freeze() internal {
        vm.warp(uint256(ch.lastBatchAt()) + FREEZE_PERIOD);
        ch.freeze();
    }

    function _indexOfToken(address token) internal view returns (uint256) {
        address[] memory listed = vault.listedTokens();
        for (uint256 i; i < listed.length; ++i) {
            if (listed[i] == token) return i;
        }
        revert("token");
    }

    function _indexOfActor(address who) internal view returns (uint256) {
        for (uint256 i; i < actors.length; ++i) {
            if (actors[i] == who) return i;
        }
        revert("actor");
    }

    /// Escape `who`'s leaf of `token` as committed by the model (the model must equal the last batch).
    function _escape(address who, address token) internal returns (uint256 amount) {
        amount = bal[token][who];
        SumTree.Node[] memory p = _tree(token).proof(_indexOfActor(who));
        ClearingHouse.AssetCommitment[] memory a = _assets();
        uint256 ai = _indexOfToken(token);
        uint256 leaf = _indexOfActor(who);
        vm.prank(who);
        ch.escapeWithdraw(a, ai, amount, leaf, p, who);
    }

    // ------------------------------------------------------------------ governance

    /// Schedule through the timelock as the governor, wait the delay, execute.
    function _governance(address target, bytes memory data) internal {
        bytes32 salt = bytes32(++_salt);
        vm.prank(governor);
        timelock.schedule(target, 0, data, bytes32(0), salt, TIMELOCK_DELAY);
        vm.warp(block.timestamp + TIMELOCK_DELAY);
        vm.prank(governor);
        timelock.execute(target, 0, data, bytes32(0), salt);
    }

    // ------------------------------------------------------------------ state digest

    /// Everything a rejected call must leave untouched.
    function _digest() internal view returns (bytes32) {
        bytes memory acc = abi.encode(
            ch.lastBatchId(),
            ch.lastBatchHash(),
            ch.lastStateRoot(),
            ch.lastWithdrawalId(),
            ch.lastCreditedDepositId(),
            ch.lastBatchAt(),
            ch.frozen(),
            vault.depositCount()
        );
        for (uint256 i; i < tokens.length; ++i) {
            address t = tokens[i];
            acc = abi.encode(
                acc,
                TestToken(t).balanceOf(address(vault)),
                TestToken(t).balanceOf(address(fund)),
                fund.expectedBalance(t),
                ch.accountHoldings(t),
                ch.escapedTotal(t),
                vault.totalPendingPayout(t)
            );
        }
        return keccak256(acc);
    }
}
